"""jf.drift, drift_from_stats and ws.drift: statistics against slow oracles, shifted columns that
must (and resampled ones that must not) drift, nulls and awkward dtypes, the model path through
a real embedded registry, and the notebook rendering."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import jupyter_features as jf
from jupyter_features.drift_detection import drift_from_stats
from jupyter_features.drift_stats import EPSILON, chi_square, compare_numeric, ks_statistic, psi
from jupyter_features.errors import DriftError

INF = math.inf
SETTINGS = settings(max_examples=60, deadline=None, derandomize=True)


# -- oracles -------------------------------------------------------------------------------------
def ks_oracle(reference: list[float], current: list[float]) -> float:
    """The largest ECDF distance, by brute force over every value of both samples."""
    best = 0.0
    for x in reference + current:
        f_r = sum(1 for v in reference if v <= x) / len(reference)
        f_c = sum(1 for v in current if v <= x) / len(current)
        best = max(best, abs(f_r - f_c))
    return best


def psi_from_counts(reference: list[int], current: list[int]) -> float:
    nr, nc = sum(reference), sum(current)
    total = 0.0
    for r, c in zip(reference, current, strict=True):
        rs, cs = (r / nr) or EPSILON, (c / nc) or EPSILON
        total += (cs - rs) * math.log(cs / rs)
    return total


def psi_oracle(reference: list[float], current: list[float], bins: int = 10) -> float:
    """PSI by hand. The reference's finite values sorted; the i/bins quantile is the
    ceil(i·n/bins)-th smallest; bins: below the minimum, the minimum alone when it repeats,
    then closed on the right at each distinct quantile, then above the maximum."""
    finite = (
        sorted(v for v in reference if math.isfinite(v))
        or sorted(v for v in current if math.isfinite(v))
        or [0.0]
    )
    n = len(finite)
    edges = sorted({finite[max(-(-i * n // bins) - 1, 0)] for i in range(bins + 1)})
    own_minimum = finite.count(finite[0]) > 1 or len(edges) == 1
    uppers = edges if own_minimum else edges[1:]

    def place(v: float) -> int:
        if v < edges[0]:
            return 0
        for i, upper in enumerate(uppers):
            if v <= upper:
                return i + 1
        return len(uppers) + 1

    def counts(values: list[float]) -> list[int]:
        out = [0] * (len(uppers) + 2)
        for v in values:
            out[place(v)] += 1
        return out

    return psi_from_counts(counts(reference), counts(current))


values = st.lists(
    st.one_of(
        st.integers(-3, 3).map(float),  # ties
        st.floats(-1e6, 1e6, allow_nan=False),
        st.sampled_from([INF, -INF]),
    ),
    min_size=1,
    max_size=40,
)


@SETTINGS
@given(reference=values, current=values)
def test_ks_and_psi_match_the_oracles(reference: list[float], current: list[float]) -> None:
    comp = compare_numeric(np.array(reference), np.array(current))
    assert comp.ks == pytest.approx(ks_oracle(reference, current), abs=1e-12)
    assert ks_statistic(reference, current) == comp.ks
    assert comp.psi == pytest.approx(psi_oracle(reference, current), rel=1e-9, abs=1e-12)
    assert comp.n_reference == len(reference) and comp.n_current == len(current)
    from scipy.stats import ks_2samp

    finite_r = [v for v in reference if math.isfinite(v)]
    finite_c = [v for v in current if math.isfinite(v)]
    n, m = len(finite_r), len(finite_c)
    if n and m and n * m / (n + m) >= 1:  # scipy's asymptotic p-value is undefined below
        expected = ks_2samp(finite_r, finite_c, method="asymp")
        mine = compare_numeric(np.array(finite_r), np.array(finite_c))
        assert mine.ks == pytest.approx(expected.statistic, abs=1e-12)
        assert mine.ks_p_value == pytest.approx(expected.pvalue, rel=1e-6, abs=1e-12)


@SETTINGS
@given(
    data=st.lists(
        st.tuples(st.sampled_from(["a", "b", "c", "d", None]), st.sampled_from(["a", "b", "e", None])),
        min_size=1,
        max_size=60,
    )
)
def test_frames_with_nulls_match_the_oracles(data: list[tuple[Any, Any]]) -> None:
    """Numbers with NaN and categories with None, through jf.drift: statistics over non-null
    values, null rates apart, chi-square as scipy computes it."""
    rng = np.random.default_rng(len(data))
    ref_cat = [a for a, _ in data]
    cur_cat = [b for _, b in data]
    ref_num = [float(rng.integers(0, 5)) if a is not None else math.nan for a in ref_cat]
    cur_num = [float(rng.integers(0, 7)) if b is not None else math.nan for b in cur_cat]
    ref = pd.DataFrame({"n": ref_num, "c": ref_cat})
    cur = pd.DataFrame({"n": cur_num, "c": cur_cat})
    if all(a is None for a in ref_cat) and all(b is None for b in cur_cat):
        with pytest.raises(DriftError, match="entirely null in both frames"):
            jf.drift(ref, cur)
        return
    report = jf.drift(ref, cur)
    table = report.table.set_index("feature")
    for col, kind in (("n", "numeric"), ("c", "categorical")):
        row = table.loc[col]
        assert row["kind"] == kind
        assert row["null_rate_reference"] == ref[col].isna().mean()
        assert row["null_rate_current"] == cur[col].isna().mean()
        assert row["n_reference"] == ref[col].notna().sum() and row["n_current"] == cur[col].notna().sum()
    r = [v for v in ref_num if not math.isnan(v)]
    c = [v for v in cur_num if not math.isnan(v)]
    n_row = table.loc["n"]
    if r and c:
        assert n_row["ks"] == pytest.approx(ks_oracle(r, c))
        assert n_row["psi"] == pytest.approx(psi_oracle(r, c))
        assert n_row["drifted"] == (n_row["psi"] > 0.2)
    else:
        assert math.isnan(n_row["psi"]) and n_row["drifted"]  # values on one side only
    labels = sorted({v for v in ref_cat + cur_cat if v is not None})
    rc = [ref_cat.count(v) for v in labels]
    cc = [cur_cat.count(v) for v in labels]
    c_row = table.loc["c"]
    if sum(rc) and sum(cc):
        assert c_row["psi"] == pytest.approx(psi_from_counts(rc, cc))
        from scipy.stats import chi2_contingency

        kept = [(x, y) for x, y in zip(rc, cc, strict=True) if x or y]
        if len(kept) > 1:
            expected = chi2_contingency(np.array(kept).T, correction=False)
            assert c_row["chi2"] == pytest.approx(expected.statistic)
            assert c_row["chi2_p_value"] == pytest.approx(expected.pvalue, abs=1e-12)


def test_ks_p_value_of_large_samples_is_the_limit_distribution() -> None:
    from scipy.stats import ks_2samp

    rng = np.random.default_rng(11)
    reference, current = rng.normal(size=30_000), rng.normal(0.02, 1, size=25_000)
    comp = compare_numeric(reference, current)
    expected = ks_2samp(reference, current, method="asymp")
    assert comp.ks == pytest.approx(expected.statistic, abs=1e-12)
    assert comp.ks_p_value == pytest.approx(expected.pvalue, rel=0.01)


def test_psi_and_chi_square_by_hand() -> None:
    assert psi([50, 50], [50, 50]) == 0.0
    assert psi([90, 10], [10, 90]) == pytest.approx(2 * 0.8 * math.log(9))
    assert psi([100, 0], [50, 50]) == pytest.approx(
        (0.5 - 1) * math.log(0.5) + (0.5 - EPSILON) * math.log(0.5 / EPSILON)
    )
    assert math.isnan(psi([0, 0], [1, 1]))
    assert all(math.isnan(v) for v in chi_square([10, 0], [0, 0]))  # a side without values
    assert chi_square([10, 0], [7, 0]) == (0.0, 1.0)  # one category: nothing to test


# -- shifted columns drift, resampled ones do not -------------------------------------------------
def _sample(rng: np.random.Generator, family: str, n: int) -> tuple[np.ndarray, float]:
    """n draws and the distribution's standard deviation."""
    if family == "normal":
        return rng.normal(10, 2, n), 2.0
    if family == "exponential":
        return rng.exponential(3, n), 3.0
    if family == "uniform":
        return rng.uniform(-1, 1, n), 2 / math.sqrt(12)
    if family == "poisson":
        return rng.poisson(4, n).astype(float), 2.0
    return rng.lognormal(0, 0.5, n), math.sqrt((math.exp(0.25) - 1) * math.exp(0.25))


@settings(max_examples=25, deadline=None, derandomize=True)
@given(
    seed=st.integers(0, 2**32 - 1),
    families=st.lists(
        st.sampled_from(["normal", "exponential", "uniform", "poisson", "lognormal"]), min_size=2, max_size=6
    ),
    shifted=st.integers(0, 5),
    shift=st.floats(1.5, 5.0),
    with_category=st.booleans(),
)
def test_only_the_shifted_column_drifts(
    seed: int, families: list[str], shifted: int, shift: float, with_category: bool
) -> None:
    """4,000 rows a side: resampling the same distribution gives PSI ≈ 9 · 2 / 4,000 ≈ 0.005,
    far below 0.2; a shift of 1.5 standard deviations or more gives PSI well above 1."""
    rng = np.random.default_rng(seed)
    n = 4000
    shifted %= len(families)
    ref, cur = {}, {}
    for i, family in enumerate(families):
        ref[f"x{i}"], sd = _sample(rng, family, n)
        cur[f"x{i}"], _ = _sample(rng, family, n)
        if i == shifted:
            cur[f"x{i}"] = cur[f"x{i}"] + shift * sd
    if with_category:
        ref["color"] = rng.choice(["red", "green", "blue", "white"], n, p=[0.4, 0.3, 0.2, 0.1])
        cur["color"] = rng.choice(["red", "green", "blue", "white"], n, p=[0.4, 0.3, 0.2, 0.1])
    report = jf.drift(pd.DataFrame(ref), pd.DataFrame(cur))
    assert report.drifted == [f"x{shifted}"]
    table = report.table.set_index("feature")
    assert table.loc[f"x{shifted}", "psi"] > 0.2
    assert (table.drop(index=f"x{shifted}")["psi"] < 0.05).all()
    assert report.table["feature"].iloc[0] == f"x{shifted}"  # drifted first
    assert jf.drift(pd.DataFrame(ref), pd.DataFrame(cur)).table.equals(report.table)  # deterministic


def test_categorical_drift_and_category_kinds() -> None:
    rng = np.random.default_rng(1)
    n = 3000
    ref = pd.DataFrame(
        {
            "country": rng.choice(["FR", "DE", "ES"], n, p=[0.5, 0.3, 0.2]),
            "flag": pd.array(rng.random(n) < 0.3, dtype="boolean"),
            "tier": pd.Categorical(
                rng.choice(["gold", "silver"], n), categories=["gold", "silver", "bronze"]
            ),
            "plain_bool": rng.random(n) < 0.5,
            "name": pd.array(rng.choice(["a", "b"], n), dtype="string"),
        }
    )
    cur = pd.DataFrame(
        {
            "country": rng.choice(["FR", "DE", "ES", "IT"], n, p=[0.2, 0.3, 0.2, 0.3]),  # a new country
            "flag": pd.array(rng.random(n) < 0.3, dtype="boolean"),
            "tier": pd.Categorical(
                rng.choice(["gold", "bronze"], n), categories=["gold", "silver", "bronze"]
            ),
            "plain_bool": rng.random(n) < 0.5,
            "name": pd.array(rng.choice(["a", "b"], n), dtype="string"),
        }
    )
    cur.loc[:99, "flag"] = pd.NA
    report = jf.drift(ref, cur)
    assert set(report.drifted) == {"country", "tier"}
    table = report.table.set_index("feature")
    assert set(table["kind"]) == {"categorical"}
    assert table.loc["flag", "null_rate_current"] == pytest.approx(100 / n)
    assert table.loc["country", "chi2_p_value"] < 1e-6 and table.loc["plain_bool", "chi2_p_value"] > 1e-3
    assert list(report.distributions["flag"]["bin"]) == ["false", "true"]
    country = report.distributions["country"].set_index("bin")
    assert country.loc["IT", "reference"] == 0 and country.loc["IT", "current"] == pytest.approx(
        0.3, abs=0.03
    )
    assert math.isnan(table.loc["country", "ks"])


def test_many_categories_keep_the_largest_and_pool_the_rest() -> None:
    rng = np.random.default_rng(2)
    ref = pd.DataFrame({"merchant": [f"m{i}" for i in rng.integers(0, 500, 5000)]})
    cur = pd.DataFrame({"merchant": [f"m{i}" for i in rng.integers(0, 500, 5000)]})
    report = jf.drift(ref, cur, max_categories=10)
    dist = report.distributions["merchant"]
    assert len(dist) == 11 and dist["bin"].iloc[-1] == "(other)"
    assert dist["reference_count"].sum() == 5000 and dist["current_count"].sum() == 5000
    assert report.ok  # 500 equally likely merchants resampled: no drift once the tail is pooled


# -- nulls, edge cases, errors ----------------------------------------------------------------------
def test_nulls_are_reported_apart_and_statistics_use_values() -> None:
    rng = np.random.default_rng(3)
    n = 4000
    ref_x = rng.normal(size=n)
    ref_x[: n // 2] = np.nan
    ref = pd.DataFrame(
        {"x": ref_x, "gone": rng.normal(size=n), "i": pd.array(rng.integers(0, 9, n), dtype="Int64")}
    )
    cur = pd.DataFrame(
        {"x": rng.normal(size=n), "gone": np.nan, "i": pd.array(rng.integers(0, 9, n), dtype="Int64")}
    )
    cur.loc[:199, "i"] = pd.NA
    report = jf.drift(ref, cur)
    table = report.table.set_index("feature")
    assert table.loc["x", "null_rate_reference"] == 0.5 and table.loc["x", "null_rate_current"] == 0.0
    assert not table.loc["x", "drifted"] and table.loc["x", "n_reference"] == n // 2
    assert table.loc["gone", "drifted"] and math.isnan(table.loc["gone", "psi"])  # all null now
    assert table.loc["gone", "null_rate_current"] == 1.0 and table.loc["gone", "n_current"] == 0
    assert table.loc["i", "kind"] == "numeric" and table.loc["i", "null_rate_current"] == 200 / n
    assert report.drifted == ["gone"]
    assert "no current values" in report._repr_html_()


def test_constant_columns_and_infinities() -> None:
    ref = pd.DataFrame({"c": [5.0] * 100, "up": [5.0] * 100, "down": [5] * 100, "inf": np.arange(100.0)})
    cur = pd.DataFrame(
        {"c": [5.0] * 80, "up": [6.0] * 80, "down": [4] * 80, "inf": np.r_[np.arange(40.0), [INF] * 40]}
    )
    report = jf.drift(ref, cur)
    table = report.table.set_index("feature")
    assert table.loc["c", "psi"] == 0.0 and table.loc["c", "ks"] == 0.0 and not table.loc["c", "drifted"]
    assert table.loc["up", "drifted"] and table.loc["down", "drifted"]  # either side of the constant
    assert list(report.distributions["c"]["bin"]) == ["< 5", "= 5", "> 5"]
    assert table.loc["inf", "drifted"] and table.loc["inf", "ks"] == pytest.approx(
        ks_oracle(list(ref["inf"]), list(cur["inf"]))
    )
    assert report.distributions["inf"]["current_count"].iloc[-1] == 40  # +inf lands above the range


def test_features_none_skips_what_cannot_be_compared_and_says_why() -> None:
    ref = pd.DataFrame(
        {"x": [1.0, 2, 3], "ts": pd.to_datetime(["2024-01-01"] * 3), "empty": [None] * 3, "old": [1, 2, 3],
         "vec": [[1.0], [2.0], [3.0]], "mixed": [1, "a", 2.5]}
    )  # fmt: skip
    cur = pd.DataFrame(
        {"x": [1.0, 2, 4], "ts": pd.to_datetime(["2024-02-01"] * 3), "empty": [np.nan] * 3, "new": [1, 2, 3],
         "vec": [[1.0], [2.0], [5.0]], "mixed": ["a", "b", 1]}
    )  # fmt: skip
    report = jf.drift(ref, cur)
    assert set(report.table["feature"]) == {"mixed", "x"}
    assert report.skipped == {
        "old": "only in the reference frame",
        "new": "only in the current frame",
        "ts": "a datetime column",
        "empty": "entirely null in both frames",
        "vec": "holds lists or other values that are not categories",
    }
    html = report._repr_html_()
    assert "not compared" in html and "only in the reference frame" in html


def test_clear_errors() -> None:
    ref = pd.DataFrame({"amount": [1.0, 2.0], "ts": pd.to_datetime(["2024-01-01"] * 2), "s": ["a", "b"]})
    with pytest.raises(DriftError, match="reference frame is empty"):
        jf.drift(ref.iloc[:0], ref)
    with pytest.raises(DriftError, match="current frame is empty"):
        jf.drift(ref, ref.iloc[:0])
    with pytest.raises(DriftError, match="must be a pandas DataFrame, not list"):
        jf.drift(ref, [1, 2])
    with pytest.raises(
        DriftError,
        match=r"feature 'amout' is not in the reference and current frame \(did you mean 'amount'\?\)",
    ):
        jf.drift(ref, ref, features=["amout"])
    with pytest.raises(DriftError, match="'s' is not in the current frame"):
        jf.drift(ref, ref.drop(columns="s"), features=["amount", "s"])
    with pytest.raises(DriftError, match="feature 'ts' cannot be compared: a datetime column"):
        jf.drift(ref, ref, features="ts")
    with pytest.raises(DriftError, match="numeric in the reference frame but categorical"):
        jf.drift(ref, ref.assign(amount=["x", "y"]), features=["amount"])
    for bad in (0, -1, math.nan, INF, "0.2", True):
        with pytest.raises(DriftError, match="threshold must be a positive number"):
            jf.drift(ref, ref, threshold=bad)  # type: ignore[arg-type]
    with pytest.raises(DriftError, match="bins must be an integer from 2 to 1000"):
        jf.drift(ref, ref, bins=1)
    with pytest.raises(DriftError, match="no feature could be compared"):
        jf.drift(ref[["ts"]], ref[["ts"]])
    dup = pd.concat([ref[["amount"]], ref[["amount"]]], axis=1)
    with pytest.raises(DriftError, match="appears more than once in the reference frame"):
        jf.drift(dup, ref)
    assert issubclass(DriftError, jf.errors.FeaturesError)


def test_threshold_and_bins_are_configurable() -> None:
    rng = np.random.default_rng(4)
    ref = pd.DataFrame({"x": rng.normal(size=5000)})
    cur = pd.DataFrame({"x": rng.normal(0.3, 1, size=5000)})
    loose = jf.drift(ref, cur)
    strict = jf.drift(ref, cur, threshold=0.01, bins=20)
    assert loose.ok and not strict.ok and strict.drifted == ["x"]
    assert len(strict.distributions["x"]) == 22 and len(loose.distributions["x"]) == 12


# -- rendering ---------------------------------------------------------------------------------------
def test_rendering_shows_badge_table_and_valid_vega_lite_charts() -> None:
    rng = np.random.default_rng(5)
    ref = pd.DataFrame(
        {"a": rng.normal(size=2000), "b": rng.normal(size=2000), "c": rng.choice(["x", "y"], 2000)}
    )
    cur = pd.DataFrame(
        {"a": rng.normal(3, 1, 2000), "b": rng.normal(size=2000), "c": rng.choice(["x", "y"], 2000)}
    )
    report = jf.drift(ref, cur)
    bundle = report._repr_mimebundle_()
    html = bundle["text/html"]
    assert "1 of 3 features drifted" in html and "class='bad'" in html and "<table>" in html
    assert "DriftReport(1 of 3 features drifted: a" in bundle["text/plain"]
    charts = report.charts
    assert list(charts) == ["a", *[f for f in report.table["feature"] if f != "a"]]  # drifted first
    for name, chart in charts.items():
        spec = chart.to_dict()  # validates against the Vega-Lite schema
        assert "/vega-lite/v5" in spec["$schema"]
        assert spec["mark"]["type"] == "bar" and spec["encoding"]["y"]["stack"] is None
        frames = {row["frame"] for row in spec["datasets"][spec["data"]["name"]]}
        assert frames == {"reference", "current"}, name
    ok = jf.drift(ref[["b"]], cur[["b"]])
    assert "0 of 1 feature drifted" in ok._repr_html_() and "class='good'" in ok._repr_html_()


def test_notebook_display_puts_html_then_the_charts(monkeypatch: pytest.MonkeyPatch) -> None:
    import IPython.display

    shown: list[Any] = []
    monkeypatch.setattr(IPython.display, "display", lambda *objs, **kw: shown.extend(objs))
    rng = np.random.default_rng(6)
    report = jf.drift(pd.DataFrame({"a": rng.normal(size=500)}), pd.DataFrame({"a": rng.normal(2, 1, 500)}))
    report._ipython_display_()
    assert "1 of 1 feature drifted" in shown[0].data
    assert any("application/vnd.vegalite.v5+json" in s for s in shown[1:] if isinstance(s, dict))


def test_lazy_exports() -> None:
    assert callable(jf.drift) and jf.DriftReport.__name__ == "DriftReport"
    import jupyter_features.drift_detection  # noqa: F401 - the module must not shadow the function

    assert callable(jf.drift)


# -- the model path: statistics recorded at export, through a real embedded registry ------------
def _tx(n: int, seed: int, scale: float = 1.0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "user_id": rng.integers(0, 200, n),
            "ts": pd.Timestamp("2024-01-01") + pd.to_timedelta(np.sort(rng.uniform(0, 60, n)), unit="D"),
            "amount": rng.gamma(2.0, 20.0, n) * scale,
            "country": rng.choice(
                ["FR", "DE", "ES", "IT", "PT", "NL", "BE"], n, p=[0.3, 0.2, 0.15, 0.1, 0.1, 0.1, 0.05]
            ),
            "online": rng.random(n) < 0.4,
            "items": rng.integers(1, 6, n),
        }
    )


def _model_workspace(tmp_path: Path, tx: pd.DataFrame) -> jf.Workspace:
    ws = jf.Workspace(tmp_path, registry=f"sqlite:///{tmp_path}/registry.db")
    ws.register_source("tx", tx, timestamp="ts")
    ws.feature_view(
        "payments", "SELECT user_id, ts, amount, country, online, items, ts AS seen_at FROM tx",
        entity="user_id", timestamp="ts",
    )  # fmt: skip
    return ws


def test_ws_drift_compares_with_the_statistics_recorded_at_export(tmp_path: Path) -> None:
    tx = _tx(5000, seed=7)
    ws = _model_workspace(tmp_path, tx)
    version = ws.export()["payments"].version
    ws.registry.record_usage("fraud_model", ["payments:*"])
    recorded = ws.registry.get("payments").spec["stats"]

    labels = tx[["user_id", "ts"]].rename(columns={"ts": "label_ts"})
    same = ws.training_frame(labels, ["payments:*"], timestamp="label_ts")  # view__feature columns
    report = ws.drift("fraud_model", current=same)
    key = f"payments@{version}:"
    assert report.ok, report.table
    assert set(report.table["feature"]) == {key + f for f in ("amount", "country", "online", "items")}
    assert report.skipped == {key + "seen_at": "a timestamp feature"}
    assert "model 'fraud_model'" in report.reference

    shifted = _tx(5000, seed=8, scale=3.0)  # plain feature names, amounts tripled
    shifted["country"] = np.where(shifted["country"] == "FR", "IT", shifted["country"])
    report = ws.drift("fraud_model", current=shifted)
    assert set(report.drifted) == {key + "amount", key + "country"}
    table = report.table.set_index("feature")
    assert math.isnan(table.loc[key + "amount", "ks_p_value"]) and table.loc[key + "amount", "ks"] > 0.3

    # Oracle: PSI of the shifted amounts against the recorded bins, by hand.
    bins = recorded["amount"]["bins"]
    counts = [0] * (len(bins) + 2)
    for v in shifted["amount"]:
        if v < bins[0][0]:
            counts[0] += 1
        elif v > bins[-1][1]:
            counts[-1] += 1
        else:
            i = next(
                i for i, (lo, hi, _) in enumerate(bins) if lo <= v < hi or (i == len(bins) - 1 and v <= hi)
            )
            counts[i + 1] += 1
    expected = psi_from_counts([0] + [n for _, _, n in bins] + [0], counts)
    assert table.loc[key + "amount", "psi"] == pytest.approx(expected)
    # Categories: the recorded top values and the rest.
    top = dict(recorded["country"]["top"])
    other = recorded["country"]["count"] - sum(top.values())
    cur_counts = shifted["country"].value_counts()
    labels_ = list(top)
    ref_c = [top[k] for k in labels_] + [other]
    cur_c = [int(cur_counts.get(k, 0)) for k in labels_]
    cur_c.append(len(shifted) - sum(cur_c))
    assert table.loc[key + "country", "psi"] == pytest.approx(psi_from_counts(ref_c, cur_c))
    assert list(report.distributions[key + "online"]["bin"]) == ["false", "true", "(other)"]


def test_ws_drift_uses_the_version_the_model_used(tmp_path: Path) -> None:
    tx = _tx(3000, seed=9)
    ws = _model_workspace(tmp_path, tx)
    assert ws.export()["payments"].version == 1
    ws.registry.record_usage("old_model", ["payments:amount"])  # unpinned: the latest now, version 1
    ws.register_source("tx", tx.assign(amount=tx["amount"] * 3), timestamp="ts")
    ws.feature_view(
        "payments", "SELECT user_id, ts, amount, country, items FROM tx", entity="user_id", timestamp="ts"
    )
    assert ws.export()["payments"].version == 2
    ws.registry.record_usage("new_model", ["payments@2:amount"])
    current = tx.assign(amount=tx["amount"] * 3)
    old = ws.drift("old_model", current=current)
    new = ws.drift("new_model", current=current)
    assert (
        old.drifted == ["payments@1:amount"]
        and new.ok
        and list(new.table["feature"]) == ["payments@2:amount"]
    )


def test_ws_drift_notes_what_it_cannot_check(tmp_path: Path) -> None:
    tx = _tx(2000, seed=10)
    ws = _model_workspace(tmp_path, tx)
    ws.feature_view("bare", "SELECT user_id, ts, amount AS spent FROM tx", entity="user_id", timestamp="ts")
    ws.export(["payments"])
    ws.export(["bare"], stats=False)
    ws.registry.record_usage("m", ["payments:amount", "payments:items", "bare:spent"])
    report = ws.drift("m", current=tx.drop(columns=["items"]))
    assert list(report.table["feature"]) == ["payments@1:amount"]
    assert report.skipped == {
        "payments@1:items": "no column 'payments__items' or 'items' in the current frame",
        "bare@1:spent": "no statistics were recorded for it (export its view with stats)",
    }
    with pytest.raises(DriftError, match="no feature could be compared"):
        ws.drift("m", current=tx[["user_id"]])
    with pytest.raises(DriftError, match="model 'nobody' has no features recorded"):
        ws.drift("nobody", current=tx)
    with pytest.raises(DriftError, match="current frame is empty"):
        ws.drift("m", current=tx.iloc[:0])


recorded_json = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 10**6) | st.floats() | st.text(max_size=5),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(
            st.sampled_from(["bins", "top", "count", "nulls", "null_rate", "min"]), inner, max_size=5
        )
    ),
    max_leaves=20,
)


@settings(max_examples=150, deadline=None, derandomize=True)
@given(stats=recorded_json, ftype=st.sampled_from([None, "int64", "float64", "string", "bool", "timestamp"]))
def test_untrusted_recorded_statistics_never_crash(stats: Any, ftype: str | None) -> None:
    """Whatever the registry holds, drift_from_stats gives a report or a DriftError."""
    current = pd.DataFrame({"f": [1.0, 2.0, 3.0], "g": ["a", "b", "a"]})
    for column in ("f", "g"):
        try:
            report = drift_from_stats(
                {"x": stats}, current, types={"x": ftype} if ftype else None, columns={"x": column}
            )
        except DriftError:
            continue
        assert list(report.table.columns)[:3] == ["feature", "kind", "psi"]


def test_drift_from_stats_with_a_hand_written_histogram() -> None:
    stats = {
        "amount": {"count": 100, "nulls": 0, "bins": [[0.0, 10.0, 50], [10.0, 20.0, 50]]},
        "country": {"count": 100, "nulls": 100, "top": [["FR", 60], ["DE", 30]]},
    }
    current = pd.DataFrame({"amount": [5.0, 15.0, 25.0, np.nan], "country": ["FR", "DE", "ES", None]})
    report = drift_from_stats(stats, current, threshold=0.5)
    table = report.table.set_index("feature")
    amount = report.distributions["amount"]
    assert list(amount["bin"]) == ["< 0", "[0, 10)", "[10, 20]", "> 20"]
    assert list(amount["current_count"]) == [0, 1, 1, 1]
    assert table.loc["amount", "psi"] == pytest.approx(psi_from_counts([0, 50, 50, 0], [0, 1, 1, 1]))
    assert table.loc["amount", "ks"] == pytest.approx(1 / 3)  # the binned CDFs part at 20
    assert table.loc["amount", "null_rate_current"] == 0.25
    assert table.loc["country", "null_rate_reference"] == 0.5
    assert list(report.distributions["country"]["reference_count"]) == [60, 30, 10]
    assert list(report.distributions["country"]["current_count"]) == [1, 1, 1]
