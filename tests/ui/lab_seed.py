"""Seed a registry and a JupyterLab root folder for the browser tests.

The data, views and registry are real: a transactions CSV, feature views defined
by a real Workspace, applied through registry_client to a SQLite registry.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

import jupyter_features as jf
import registry_client

#: The views the registry holds before the browser opens (user_spend has 2 versions).
SEEDED_VIEWS = ("merchant_risk", "user_profile", "user_spend")

_WEEK = "OVER (PARTITION BY user_id ORDER BY ts RANGE BETWEEN INTERVAL 7 DAYS PRECEDING AND CURRENT ROW)"
_SPEND = f"sum(amount) {_WEEK} AS spend_7d"
_COUNT = f"count(*) {_WEEK} AS tx_count_7d"
_MAX = "max(amount) OVER (PARTITION BY user_id ORDER BY ts) AS max_amount"

#: The three versions of user_spend: 1 and 2 are seeded, 3 is defined in the notebook and exported.
SPEND_SQL = [
    "SELECT user_id, ts,\n       " + ",\n       ".join(cols) + "\nFROM transactions"
    for cols in ([_SPEND], [_SPEND, _COUNT], [_SPEND, _COUNT, _MAX])
]


def transactions(n: int = 400, seed: int = 7) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    start = pd.Timestamp("2024-01-01")
    return pd.DataFrame(
        {
            "user_id": rng.integers(1, 40, n),
            "merchant_id": rng.integers(1, 12, n),
            "ts": start + pd.to_timedelta(np.sort(rng.integers(0, 60 * 24 * 3600, n)), unit="s"),
            "amount": np.round(rng.lognormal(3.0, 0.8, n), 2),
            "country": rng.choice(["FR", "DE", "US", "BR"], n),
        }
    )


def _stats(frame: pd.DataFrame, features: list[str]) -> dict[str, Any]:
    """Per-feature statistics in the shape the sidebar shows (null rate, range, mean, bins)."""
    out: dict[str, Any] = {}
    for name in features:
        col = frame[name]
        values = pd.to_numeric(col, errors="coerce").dropna()
        entry: dict[str, Any] = {"count": int(col.notna().sum()), "nulls": int(col.isna().sum())}
        entry["null_rate"] = entry["nulls"] / max(1, len(col))
        if len(values) and col.dtype != object:
            counts, edges = np.histogram(values.astype(float), bins=12)
            entry.update(
                min=float(values.min()),
                max=float(values.max()),
                mean=float(values.mean()),
                bins=[[float(edges[i]), float(edges[i + 1]), int(c)] for i, c in enumerate(counts)],
            )
        out[name] = entry
    return out


def online_store_url(root: Path) -> str:
    """The online store the seed materializes into, beside the registry."""
    return f"sqlite:///{root.parent / 'online' / 'online.db'}"


def seed(root: Path, registry_url: str) -> None:
    """Write transactions.csv and a notebook into ``root``; fill the registry at ``registry_url``."""
    tx = transactions()
    tx.to_csv(root / "transactions.csv", index=False)
    ws = jf.Workspace(root, registry=registry_url)
    ws.register_source("transactions", tx, timestamp="ts")
    spend_v1 = ws.feature_view(
        "user_spend", SPEND_SQL[0],
        entity="user_id", timestamp="ts", ttl="30d", owner="fraud-team", tags=["payments"],
        description="What a user spent over the last 7 days.",
    )  # fmt: skip
    spend = ws.feature_view(
        "user_spend", SPEND_SQL[1], entity="user_id", timestamp="ts", ttl="30d", owner="fraud-team",
        tags=["payments"], description="What a user spent, and how often, over the last 7 days.",
        feature_descriptions={"spend_7d": "sum of amounts in the 7 days up to the event",
                              "tx_count_7d": "number of transactions in those 7 days"},
    )  # fmt: skip
    merchant = ws.feature_view(
        "merchant_risk",
        "SELECT merchant_id, avg(amount) AS avg_amount, max(amount > 100) AS large_tx "
        "FROM transactions GROUP BY merchant_id",
        entity="merchant_id", timestamp="ts", windows=["1d", "7d"], owner="risk-team",
        tags=["merchants", "payments"],
        description="A merchant's average ticket, and whether one was large, in the last day and week.",
    )  # fmt: skip
    profile = ws.feature_view(
        "user_profile",
        "SELECT user_id, ts, country FROM transactions",
        entity="user_id", timestamp="ts", owner="growth-team", tags=["profile"],
        description="Where the user shops from.",
    )  # fmt: skip
    registry = registry_client.connect(registry_url)
    try:
        registry.apply(spend_v1.to_spec(), created_by="alice@laptop")
        for view, who in ((spend, "alice@laptop"), (merchant, "bob@workstation"), (profile, "carol@server")):
            if view.windows:  # the windows at a few label times: what a training frame would hold
                labels = ws.sql("SELECT merchant_id, ts FROM transactions")
                frame = ws.training_frame(labels, [f"{view.name}:*"], timestamp="ts", plain_names=True)
            else:
                frame = ws.sql(f"SELECT * FROM ({view.sql})")
            spec = {**view.to_spec(), "stats": _stats(frame, view.feature_names)}
            registry.apply(spec, created_by=who)
        registry.record_usage("fraud_model", ["user_spend:spend_7d", "merchant_risk:avg_amount_7d"])
    finally:
        registry.close()
    # user_spend v2 is online and checked; merchant_risk, which fraud_model uses too, is not online.
    online = jf.Workspace(root, registry=registry_url, online_store=online_store_url(root))
    online.register_source("transactions", tx, timestamp="ts")
    online.materialize(["user_spend@2"], end="2024-03-01", progress=False)
    assert online.check_online(["user_spend@2"], progress=False).ok
    online.close()
    (root / "export.ipynb").write_text(json.dumps(_notebook()))


def _code(source: str) -> dict[str, Any]:
    return {"cell_type": "code", "execution_count": None, "metadata": {}, "outputs": [], "source": source}


def _notebook() -> dict[str, Any]:
    """A notebook that redefines user_spend with one more feature, for the Export to registry button."""
    define = (
        "import pandas as pd\n"
        "import jupyter_features as jf\n\n"
        "ws = jf.workspace()\n"
        'ws.register_source("transactions", pd.read_csv("transactions.csv", parse_dates=["ts"]), timestamp="ts")\n'
        f'fv = ws.feature_view(\n    "user_spend",\n    """{SPEND_SQL[2]}""",\n'
        '    entity="user_id", timestamp="ts", ttl="30d", owner="fraud-team", tags=["payments"],\n'
        '    description="What a user spent, how often, and the largest amount.",\n)\n'
        "fv.preview()"
    )
    return {
        "cells": [_code(define)],
        "metadata": {
            "kernelspec": {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"},
            "language_info": {"name": "python"},
        },
        "nbformat": 4,
        "nbformat_minor": 5,
    }
