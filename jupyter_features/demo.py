"""`jupyter-features demo`: the whole mission on embedded defaults and synthetic data.

Card transactions with fraud labels, users and merchants; chargebacks arrive two
weeks after the fraud, which is exactly the leak a point-in-time join prevents.
Each step is a function in STEPS, so the demo grows with the product.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

    from .workspace import Workspace

__all__ = ["generate_data", "define_views", "run_demo", "add_cli", "DemoContext", "STEPS"]

#: Windowed views: each aggregate over the rows in the last 7 and 30 days before each label's
#: own time (spend_7d, tx_7d, ..., max_amount_30d), not as of the user's last transaction.
USER_SPEND_SQL = """
SELECT user_id,
       sum(amount) AS spend,
       count(*) AS tx,
       avg(amount) AS avg_amount,
       max(amount) AS max_amount
FROM transactions
GROUP BY user_id
"""
USER_SPEND_WINDOWS = ["7d", "30d"]

#: Chargebacks count from the time they are reported (a fraud is known only then).
MERCHANT_RISK_SQL = """
SELECT merchant_id,
       count(*) AS chargebacks,
       sum(amount) AS chargeback_amount
FROM chargebacks
GROUP BY merchant_id
"""
MERCHANT_RISK_WINDOWS = ["30d"]

USER_PROFILE_SQL = """
SELECT user_id, signup_ts, age, country, credit_limit
FROM users
"""


def generate_data(folder: Path, rows: int = 200_000, seed: int = 7) -> dict[str, Path]:
    """Write users, merchants, transactions and chargebacks as parquet under ``folder``."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    n_users = max(rows // 20, 10)
    n_merchants = max(min(rows // 100, 5_000), 5)
    start = pd.Timestamp("2026-01-01")
    days = 180
    users = pd.DataFrame(
        {
            "user_id": np.arange(n_users, dtype=np.int64),
            "signup_ts": start - pd.to_timedelta(rng.integers(1, 3 * 365, n_users), unit="D"),
            "age": rng.integers(18, 90, n_users).astype(np.int64),
            "country": rng.choice(
                ["US", "GB", "DE", "FR", "BR", "IN", "NG"], n_users, p=[0.4, 0.15, 0.12, 0.1, 0.1, 0.08, 0.05]
            ),
            "credit_limit": rng.choice([500.0, 1000.0, 2500.0, 5000.0, 10000.0], n_users),
        }
    )
    merchant_risk = rng.beta(0.5, 30, n_merchants)
    merchants = pd.DataFrame(
        {
            "merchant_id": np.arange(n_merchants, dtype=np.int64),
            "category": rng.choice(
                ["grocery", "travel", "electronics", "fashion", "gaming", "fuel"], n_merchants
            ),
        }
    )
    user_id = rng.zipf(1.6, rows) % n_users
    merchant_id = rng.integers(0, n_merchants, rows)
    ts = start + pd.to_timedelta(np.sort(rng.uniform(0, days * 86400, rows)), unit="s")
    amount = np.round(rng.lognormal(3.5, 1.1, rows), 2)
    young = users["age"].to_numpy()[user_id] < 25
    logit = -6.0 + 25 * merchant_risk[merchant_id] + 0.5 * np.log1p(amount) - 1.5 + 0.8 * young
    fraud = rng.uniform(size=rows) < 1 / (1 + np.exp(-logit))
    tx = pd.DataFrame(
        {
            "tx_id": np.arange(rows, dtype=np.int64),
            "user_id": user_id.astype(np.int64),
            "merchant_id": merchant_id.astype(np.int64),
            "ts": ts.round("ms"),
            "amount": amount,
            "is_fraud": fraud,
        }
    )
    cb = tx.loc[tx["is_fraud"], ["tx_id", "merchant_id", "ts", "amount"]].copy()
    cb["reported_ts"] = cb["ts"] + pd.to_timedelta(rng.uniform(3, 30, len(cb)), unit="D").round("s")
    cb = cb.drop(columns="ts").sort_values("reported_ts")
    paths = {
        "users": folder / "users.parquet",
        "merchants": folder / "merchants.parquet",
        "transactions": folder / "transactions.parquet",
        "chargebacks": folder / "chargebacks.parquet",
    }
    users.to_parquet(paths["users"], index=False)
    merchants.to_parquet(paths["merchants"], index=False)
    tx.to_parquet(paths["transactions"], index=False)
    cb.to_parquet(paths["chargebacks"], index=False)
    return paths


def define_views(ws: Workspace, data: Path) -> None:
    """Register the demo sources and define its three feature views."""
    ws.register_source("users", data / "users.parquet", timestamp="signup_ts")
    ws.register_source("merchants", data / "merchants.parquet")
    ws.register_source("transactions", data / "transactions.parquet", timestamp="ts")
    ws.register_source("chargebacks", data / "chargebacks.parquet", timestamp="reported_ts")
    ws.feature_view(
        "user_spend", USER_SPEND_SQL, entity=["user_id"], timestamp="ts", windows=USER_SPEND_WINDOWS,
        description="A card holder's spending in the last 7 and 30 days: sum, count, mean and max.",
        owner="fraud-team", tags=["payments", "fraud"],
    )  # fmt: skip
    ws.feature_view(
        "merchant_risk", MERCHANT_RISK_SQL, entity=["merchant_id"], timestamp="reported_ts",
        windows=MERCHANT_RISK_WINDOWS,
        description="Chargebacks reported against a merchant in the last 30 days (known only once reported).",
        owner="risk-team", tags=["fraud"],
    )  # fmt: skip
    ws.feature_view(
        "user_profile", USER_PROFILE_SQL, entity=["user_id"], timestamp="signup_ts",
        description="Static facts about a card holder.", owner="fraud-team", tags=["profile"],
    )  # fmt: skip


@dataclass
class DemoContext:
    """What the demo steps share."""

    folder: Path
    rows: int
    ws: Workspace | None = None
    labels: pd.DataFrame | None = None
    train: pd.DataFrame | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    say: Callable[[str], None] = print


def _step_data(ctx: DemoContext) -> str:
    paths = generate_data(ctx.folder / "data", rows=ctx.rows)
    return f"wrote {ctx.rows:,} transactions and their users, merchants and chargebacks to {paths['transactions'].parent}"


def _step_views(ctx: DemoContext) -> str:
    from .workspace import Workspace

    ctx.ws = Workspace(ctx.folder)
    define_views(ctx.ws, ctx.folder / "data")
    lines = [f"registered {len(ctx.ws.sources)} sources and {len(ctx.ws.views)} feature views:"]
    for view in ctx.ws.views.values():
        lines.append(f"    {view.name}: " + ", ".join(f"{n} ({t})" for n, t in view.schema.items()))
    return "\n".join(lines)


def _step_training_frame(ctx: DemoContext) -> str:
    assert ctx.ws is not None
    ctx.labels = ctx.ws.sql(
        "SELECT tx_id, user_id, merchant_id, ts AS label_ts, amount, is_fraud FROM transactions ORDER BY ts"
    )
    ctx.train = ctx.ws.training_frame(
        ctx.labels, ["user_spend:*", "merchant_risk:*", "user_profile:age", "user_profile:credit_limit"],
        timestamp="label_ts",
    )  # fmt: skip
    flagged = (ctx.train["merchant_risk__chargebacks_30d"] > 0).mean()
    return (
        f"training frame: {len(ctx.train):,} rows × {ctx.train.shape[1]} columns "
        f"(label rows in = rows out; {flagged:.0%} of them at a merchant with a chargeback reported "
        "in the 30 days before)"
    )


def _step_evaluate(ctx: DemoContext) -> str:
    from .evaluation import evaluate

    assert ctx.train is not None
    report = evaluate(ctx.train, label="is_fraud", split="time", time_column="label_ts")
    without = evaluate(
        ctx.train, label="is_fraud", split="time", time_column="label_ts",
        features=[f for f in report.features if not f.startswith("merchant_risk__")],
    )  # fmt: skip
    ctx.extra["report"] = report
    m = report.metrics
    top = ", ".join(report.importance["feature"].head(3))
    delta = report.compare(without).delta("other")
    verdict = ": the feature view helps" if delta < 0 else ""
    return (
        f"{report.model_name}, trained on {report.n_train:,} earlier rows, tested on {report.n_test:,} later ones: "
        f"AUC {m['auc']:.3f}, log-loss {m['log_loss']:.4f}, average precision {m.get('average_precision', float('nan')):.3f}\n"
        f"    most important: {top}\n"
        f"    without merchant_risk the AUC moves by {delta:+.3f}{verdict}"
    )


def _step_export(ctx: DemoContext) -> str:
    assert ctx.ws is not None
    records = ctx.ws.export()
    again = ctx.ws.export()  # unchanged definitions: no new versions
    lines = [f"exported {len(records)} feature views to {ctx.ws.registry.url}:"]
    for record in records.values():
        lines.append(f"    {record.ref}  hash {record.hash[:12]}  by {record.created_by}")
    unchanged = all(again[n].version == r.version for n, r in records.items())
    lines.append(f"    exporting again {'keeps the same versions' if unchanged else 'made new versions'}")
    return "\n".join(lines)


def _step_materialize(ctx: DemoContext) -> str:
    assert ctx.ws is not None
    end = ctx.ws.sql("SELECT max(ts) AS end FROM transactions")["end"].iloc[0].to_pydatetime()
    ctx.extra["online_end"] = end
    results = ctx.ws.materialize(["user_spend", "merchant_risk", "user_profile"], end=end, progress=False)
    lines = [f"materialized as of {end:%Y-%m-%d %H:%M} to {ctx.ws.settings.online_store_url}:"]
    for r in results.values():
        lines.append(f"    {r.view}: version {r.version}, {r.rows:,} entities in {r.seconds:.2f}s")
    return "\n".join(lines)


def _step_online_read(ctx: DemoContext) -> str:
    import random

    assert ctx.ws is not None
    ws = ctx.ws
    users = ws.sql("SELECT DISTINCT user_id FROM transactions")["user_id"].tolist()
    refs = ["user_spend:spend_7d", "user_spend:tx_7d", "user_profile:age"]
    rng = random.Random(7)
    rows = [[{"user_id": int(rng.choice(users))}] for _ in range(2_000)]
    at = ctx.extra.get("online_end")  # as of the run's end: the demo's data is in the past
    for row in rows[:200]:  # warm up
        ws.online_features(refs, row, at=at)
    times = []
    for row in rows:
        t0 = time.perf_counter()
        ws.online_features(refs, row, at=at).to_dict()
        times.append(time.perf_counter() - t0)
    times.sort()
    p50, p99 = times[len(times) // 2] * 1e6, times[int(len(times) * 0.99)] * 1e6
    sample = ws.online_features(refs, rows[0], at=at).to_dict()
    return (
        f"{len(rows):,} reads of 3 features (2 views) for one user: p50 {p50:.0f} µs, p99 {p99:.0f} µs\n"
        f"    user {rows[0][0]['user_id']}: {sample}"
    )


#: (title, step) in order; later parts of the product add theirs.
STEPS: list[tuple[str, Callable[[DemoContext], str]]] = [
    ("generate synthetic data", _step_data),
    ("register sources, define feature views", _step_views),
    ("point-in-time training frame", _step_training_frame),
    ("evaluate a quick model", _step_evaluate),
    ("export to the registry", _step_export),
    ("materialize to the online store", _step_materialize),
    ("online read", _step_online_read),
]


def run_demo(
    folder: str | Path = "jupyter-features-demo", rows: int = 200_000, say: Callable[[str], None] = print
) -> DemoContext:
    ctx = DemoContext(folder=Path(folder).resolve(), rows=rows, say=say)
    say(f"jupyter-features demo in {ctx.folder}")
    total = time.perf_counter()
    for i, (title, step) in enumerate(STEPS, 1):
        t0 = time.perf_counter()
        message = step(ctx)
        say(f"[{i}/{len(STEPS)}] {title} ({time.perf_counter() - t0:.2f}s)\n    {message}")
    say(f"done in {time.perf_counter() - total:.2f}s")
    return ctx


def add_cli(sub: Any) -> Callable[[argparse.Namespace], int]:
    p = sub.add_parser("demo", help="run the whole mission on synthetic data with embedded defaults")
    p.add_argument(
        "--dir", default="jupyter-features-demo", help="folder for data and state (default: %(default)s)"
    )
    p.add_argument("--rows", type=int, default=200_000, help="number of transactions (default: %(default)s)")

    def handle(args: argparse.Namespace) -> int:
        run_demo(args.dir, rows=args.rows)
        return 0

    return handle
