"""Feature drift: is the data a model sees now distributed like the data it learned from?

``drift(reference, current)`` compares two DataFrames feature by feature: PSI over the
reference's quantile bins and the two-sample KS statistic for numbers, PSI and chi-square
over categories for strings, booleans and categoricals; null rates apart, statistics over
non-null values. ``drift_for_model`` (``ws.drift(model, current=...)``) compares a frame with
the statistics the registry recorded for the model's features when their views were
exported, through ``drift_from_stats``. Both return a ``DriftReport``: a table, one Altair
chart per feature and a badge in the notebook.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeGuard

import numpy as np
import pandas as pd

from .drift_report import DriftReport, build_report, table_row
from .drift_stats import (
    Comparison,
    compare_categories,
    compare_histogram,
    compare_numeric,
    compare_top_values,
)
from .errors import DriftError, NotFoundError, did_you_mean

__all__ = ["DriftReport", "drift", "drift_from_stats", "drift_for_model"]

_PROGRESS_CELLS = 5_000_000  # values to compare before a progress bar is worth showing
_MAX_RECORDED = 10_000  # bins or top values a recorded statistic may hold
_DATETIME = ("datetime", "datetime64", "date", "timedelta", "timedelta64", "time", "period")
_CONTAINERS = (list, tuple, dict, set, np.ndarray)
_NUMBERS = ("integer", "floating", "mixed-integer-float", "decimal")


# -- reading a column --------------------------------------------------------------------------
@dataclass(frozen=True)
class _Values:
    """A column's non-null values, as numbers or category counts, and its null count."""

    kind: str  # numeric | categorical | empty (no value) | skip
    rows: int
    nulls: int
    numbers: np.ndarray | None = None
    counts: dict[str, int] | None = None
    reason: str = ""

    @property
    def null_rate(self) -> float:
        return self.nulls / self.rows if self.rows else math.nan


def _category_label(value: Any) -> str:
    """A category's label: booleans as 'true'/'false' (as the registry records them), else str()."""
    if isinstance(value, (bool, np.bool_)):
        return "true" if value else "false"
    return str(value)


def _numbers(values: np.ndarray) -> _Values:
    missing = np.isnan(values)
    nulls = int(missing.sum())
    kind = "numeric" if nulls < len(values) else "empty"
    return _Values(kind, len(values), nulls, numbers=values[~missing] if nulls else values)


def _categories(series: pd.Series) -> _Values:
    try:
        found = series.value_counts(dropna=True, sort=False)
    except TypeError:  # unhashable values: lists, arrays, dicts
        return _Values("skip", len(series), 0, reason="holds lists or other values that are not categories")
    counts: dict[str, int] = {}
    for value, n in found.items():
        if n:
            label = _category_label(value)
            counts[label] = counts.get(label, 0) + int(n)
    nulls = len(series) - sum(counts.values())
    return _Values("categorical" if counts else "empty", len(series), nulls, counts=counts)


def _read(series: pd.Series) -> _Values:
    """What a column holds: numbers (NaN is null; ±inf kept), categories, nothing, or neither."""
    dtype, rows = series.dtype, len(series)
    types = pd.api.types
    if isinstance(dtype, pd.CategoricalDtype) or types.is_bool_dtype(dtype):
        return _categories(series)
    if (
        types.is_datetime64_any_dtype(dtype)
        or types.is_timedelta64_dtype(dtype)
        or isinstance(dtype, pd.PeriodDtype)
    ):
        return _Values("skip", rows, 0, reason="a datetime column")
    if types.is_complex_dtype(dtype):
        return _Values("skip", rows, 0, reason="complex numbers")
    if types.is_numeric_dtype(dtype):
        return _numbers(series.to_numpy(dtype="float64", na_value=np.nan))
    if types.is_object_dtype(dtype) or types.is_string_dtype(dtype):
        inferred = types.infer_dtype(series, skipna=True)
        if inferred == "empty":
            return _Values("empty", rows, rows)
        if inferred in _DATETIME:
            return _Values("skip", rows, 0, reason="a datetime column")
        if inferred in _NUMBERS or inferred == "mixed-integer":
            try:
                return _numbers(pd.to_numeric(series).to_numpy(dtype="float64", na_value=np.nan))
            except (TypeError, ValueError):
                pass  # numbers mixed with text: categories
        if inferred == "mixed" and any(isinstance(v, _CONTAINERS) for v in series.dropna()):
            return _Values("skip", rows, 0, reason="holds lists or other values that are not categories")
        return _categories(series)
    return _Values("skip", rows, 0, reason=f"{dtype} values are not numbers, categories or booleans")


# -- two frames --------------------------------------------------------------------------------
def _check_frame(frame: Any, which: str) -> pd.DataFrame:
    if not isinstance(frame, pd.DataFrame):
        raise DriftError(f"drift: the {which} frame must be a pandas DataFrame, not {type(frame).__name__}")
    if len(frame) == 0:
        raise DriftError(f"drift: the {which} frame is empty (0 rows); drift compares frames that have rows")
    return frame


def _check_options(threshold: Any, bins: int = 10, max_categories: int = 20) -> float:
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not 0 < threshold < math.inf:
        raise DriftError(f"drift: threshold must be a positive number (PSI, e.g. 0.2), got {threshold!r}")
    for name, value, low in (("bins", bins, 2), ("max_categories", max_categories, 1)):
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= 1000:
            raise DriftError(f"drift: {name} must be an integer from {low} to 1000, got {value!r}")
    return float(threshold)


def _columns(frame: pd.DataFrame) -> list[str]:
    return [str(c) for c in frame.columns]


def _pick(
    reference: pd.DataFrame, current: pd.DataFrame, features: Sequence[str] | str | None
) -> tuple[list[Any], dict[str, str]]:
    """The columns to compare, and the ones left out with the reason."""
    skipped: dict[str, str] = {}
    if features is None:
        in_current, in_reference = set(current.columns), set(reference.columns)
        names = [c for c in dict.fromkeys(reference.columns) if c in in_current]
        for c in reference.columns:
            if c not in in_current:
                skipped[str(c)] = "only in the reference frame"
        for c in current.columns:
            if c not in in_reference:
                skipped[str(c)] = "only in the current frame"
    else:
        names = [features] if isinstance(features, str) else list(features)
        if not names:
            raise DriftError(
                "drift: features=[] names no feature; name columns, or pass None for every shared one"
            )
        both = [c for c in _columns(reference) if c in set(_columns(current))]
        for name in names:
            missing = [
                w for w, f in (("reference", reference), ("current", current)) if name not in f.columns
            ]
            if missing:
                frame = current if missing == ["current"] else reference
                raise DriftError(
                    f"drift: feature '{name}' is not in the {' and '.join(missing)} frame"
                    f"{did_you_mean(str(name), _columns(frame))}; columns in both frames: "
                    f"{', '.join(both[:30]) or 'none'}{' …' if len(both) > 30 else ''}"
                )
        names = list(dict.fromkeys(names))
    for name in names:
        for which, frame in (("reference", reference), ("current", current)):
            if isinstance(frame[name], pd.DataFrame):
                raise DriftError(
                    f"drift: column '{name}' appears more than once in the {which} frame; rename one"
                )
    return names, skipped


def _progress(items: list[Any], cells: int, what: str, progress: bool | None) -> Iterable[Any]:
    show = cells >= _PROGRESS_CELLS if progress is None else progress
    if not show:
        return items
    from tqdm.auto import tqdm

    return tqdm(items, desc=what, unit="feature", leave=False)


def drift(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    features: Sequence[str] | str | None = None,
    *,
    threshold: float = 0.2,
    bins: int = 10,
    max_categories: int = 20,
    progress: bool | None = None,
) -> DriftReport:
    """Compare ``current`` with ``reference`` feature by feature -> DriftReport.

    Numbers: PSI over ``bins`` quantile bins of the reference (plus one bin on each side for
    values outside its range) and the exact two-sample KS statistic with its asymptotic
    p-value. Strings, booleans and categoricals: PSI and Pearson's chi-square over the
    ``max_categories`` largest categories and one bin for the rest. Statistics use non-null
    values (NaN is null, ±inf are values); null rates are reported apart. PSI counts an empty
    bin as a share of 0.0001. A feature drifted when PSI > ``threshold``, or when it has
    values on one side only.

    ``features=None`` compares every column the frames share except datetime columns, columns
    of lists and columns of different kinds in the two frames; ``report.skipped`` says what
    was left out and why. A column named in ``features`` must be in both frames and
    comparable, or DriftError says why not. Columns entirely null in both are never compared.
    Label, time and id columns are the caller's to leave out. A progress bar shows for large
    frames (``progress`` forces it on or off).
    """
    threshold = _check_options(threshold, bins, max_categories)
    reference = _check_frame(reference, "reference")
    current = _check_frame(current, "current")
    explicit = features is not None
    names, skipped = _pick(reference, current, features)
    rows, comparisons = [], {}
    cells = (len(reference) + len(current)) * len(names)
    for name in _progress(names, cells, "drift", progress):
        feature = str(name)
        ref, cur = _read(reference[name]), _read(current[name])
        reason = ""
        if "skip" in (ref.kind, cur.kind):
            reason = ref.reason or cur.reason
        elif ref.kind == cur.kind == "empty":
            reason = "entirely null in both frames"
        elif "empty" not in (ref.kind, cur.kind) and ref.kind != cur.kind:
            reason = f"{ref.kind} in the reference frame but {cur.kind} in the current one; cast one to match"
        if reason:
            if explicit and reason != "entirely null in both frames":
                raise DriftError(f"drift: feature '{feature}' cannot be compared: {reason}")
            skipped[feature] = reason
            continue
        kind = cur.kind if ref.kind == "empty" else ref.kind
        if kind == "numeric":
            empty = np.empty(0)
            ref_numbers = ref.numbers if ref.numbers is not None else empty
            cur_numbers = cur.numbers if cur.numbers is not None else empty
            comp = compare_numeric(ref_numbers, cur_numbers, bins)
        else:
            comp = compare_categories(ref.counts or {}, cur.counts or {}, max_categories)
        comparisons[feature] = comp
        rows.append(table_row(feature, comp, ref.null_rate, cur.null_rate, threshold))
    return build_report(
        rows, comparisons, threshold=threshold, reference=f"{len(reference):,} rows",
        current=f"{len(current):,} rows", skipped=skipped,
        method=f"numbers over {bins} quantile bins of the reference, categories over the "
        f"{max_categories} largest; empty bins count as 0.0001",
    )  # fmt: skip


# -- recorded statistics ---------------------------------------------------------------------
def _is_number(value: Any) -> TypeGuard[float]:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _is_count(value: Any) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _recorded_null_rate(stats: Mapping[str, Any]) -> float:
    count, nulls = stats.get("count"), stats.get("nulls")
    if _is_count(count) and _is_count(nulls) and count + nulls:
        return float(nulls / (count + nulls))
    rate = stats.get("null_rate")
    return float(rate) if _is_number(rate) and 0 <= rate <= 1 else math.nan


def _recorded_histogram(stats: Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray] | str:
    bins = stats.get("bins")
    if not isinstance(bins, list) or not bins:
        return "no histogram was recorded (no values at export?)"
    if len(bins) > _MAX_RECORDED:
        return f"the recorded histogram has more than {_MAX_RECORDED:,} bins"
    los, his, counts = [], [], []
    for b in bins:
        if not (isinstance(b, (list, tuple)) and len(b) == 3 and _is_number(b[0]) and _is_number(b[1])):
            return "the recorded histogram is malformed (bins must be [start, end, count])"
        if not _is_count(b[2]) or b[1] < b[0]:
            return "the recorded histogram is malformed (a count is not a whole number, or a bin ends before it starts)"
        los.append(float(b[0]))
        his.append(float(b[1]))
        counts.append(b[2])
    edges = np.array([*los, his[-1]])
    if (np.diff(edges) < 0).any():
        return "the recorded histogram is malformed (its bins are not in order)"
    if not sum(counts):
        return "the recorded histogram holds no values"
    return edges, np.asarray(counts, dtype=np.int64)


def _recorded_top(stats: Mapping[str, Any]) -> tuple[list[tuple[str, int]], int] | str:
    top, count = stats.get("top"), stats.get("count")
    if not isinstance(top, list) or not top:
        return "no top values were recorded (no values at export?)"
    if len(top) > _MAX_RECORDED or not _is_count(count):
        return "the recorded top values are malformed"
    pairs = []
    for item in top:
        if not (isinstance(item, (list, tuple)) and len(item) == 2 and _is_count(item[1])):
            return "the recorded top values are malformed (each must be [value, count])"
        if not isinstance(item[0], (str, int, float, bool)):
            return "the recorded top values are malformed (a value is not text, a number or a boolean)"
        pairs.append((_category_label(item[0]), int(item[1])))
    other = count - sum(n for _, n in pairs)
    if other < 0 or not count:
        return "the recorded top values are malformed (they count more values than the feature had)"
    return pairs, other


_TYPE_KIND = {"int64": "numeric", "float64": "numeric", "string": "categorical", "bool": "categorical",
              "categorical": "categorical"}  # fmt: skip
_TYPE_SKIP = {"timestamp": "a timestamp feature", "list<float>": "an embedding (list<float>) feature"}


def _recorded_kind(stats: Mapping[str, Any], ftype: str | None) -> str:
    if ftype in _TYPE_SKIP:
        return "skip"
    if ftype in _TYPE_KIND:
        return _TYPE_KIND[ftype]
    if stats.get("top"):
        return "categorical"
    return "numeric" if stats.get("bins") and not isinstance(stats.get("min"), str) else "skip"


def drift_from_stats(
    stats: Mapping[str, Mapping[str, Any] | None],
    current: pd.DataFrame,
    *,
    types: Mapping[str, str] | None = None,
    columns: Mapping[str, str | Sequence[str]] | None = None,
    threshold: float = 0.2,
    reference: str = "recorded statistics",
    skipped: Mapping[str, str] | None = None,
) -> DriftReport:
    """Compare ``current`` with recorded per-feature statistics -> DriftReport.

    ``stats`` maps a feature to what ``ColumnProfile.summary()`` records (what ``ws.export``
    stores with each version): null counts, a histogram ``bins: [[start, end, count], ...]``
    for numbers, ``top: [[value, count], ...]`` for categories. ``types`` gives each feature's
    type (int64, float64, string, bool, categorical; timestamps and embeddings are not
    compared); ``columns`` the column (or candidate columns, first present wins) of
    ``current`` holding it, by default its own name. Numbers are binned into the recorded
    bins (plus one bin on each side for values outside them); categories into the recorded
    top values and one bin for every other value. KS is approximate here: the largest gap
    between the two binned CDFs at the recorded bin edges (a lower bound of the exact
    statistic), with no p-value. A feature without usable statistics or without a column in
    ``current`` is noted in ``report.skipped``; it is an error only when nothing is left.
    """
    threshold = _check_options(threshold)
    current = _check_frame(current, "current")
    if not isinstance(stats, Mapping):
        raise DriftError(
            f"drift: stats must map feature names to recorded statistics, not {type(stats).__name__}"
        )
    notes = dict(skipped or {})
    rows, comparisons = [], {}
    for name, recorded in stats.items():
        feature = str(name)
        wanted = (columns or {}).get(feature, feature)
        candidates = [wanted] if isinstance(wanted, str) else list(wanted)
        column = next((c for c in candidates if c in current.columns), None)
        if not isinstance(recorded, Mapping):
            notes.setdefault(feature, "no statistics were recorded for it (export its view with stats)")
            continue
        if column is None:
            notes[feature] = f"no column {' or '.join(map(repr, candidates))} in the current frame"
            continue
        ftype = (types or {}).get(feature)
        kind = _recorded_kind(recorded, ftype)
        if kind == "skip":
            notes[feature] = _TYPE_SKIP.get(
                str(ftype), "the recorded statistics hold neither a histogram nor top values"
            )
            continue
        values = _read(current[column])
        if values.kind == "skip" or values.kind not in (kind, "empty"):
            notes[feature] = (
                f"column '{column}' holds {values.reason or values.kind + ' values'}, the feature is {kind}"
            )
            continue
        comp: Comparison
        if kind == "numeric":
            histogram = _recorded_histogram(recorded)
            if isinstance(histogram, str):
                notes[feature] = histogram
                continue
            numbers = values.numbers if values.numbers is not None else np.empty(0)
            comp = compare_histogram(histogram[0], histogram[1], numbers)
        else:
            top = _recorded_top(recorded)
            if isinstance(top, str):
                notes[feature] = top
                continue
            comp = compare_top_values(top[0], top[1], values.counts or {})
        comparisons[feature] = comp
        rows.append(table_row(feature, comp, _recorded_null_rate(recorded), values.null_rate, threshold))
    return build_report(
        rows, comparisons, threshold=threshold, reference=reference, current=f"{len(current):,} rows",
        skipped=notes, method="numbers over the recorded histogram's bins (KS approximate, from the binned "
        "CDFs), categories over the recorded top values and the rest; empty bins count as 0.0001",
    )  # fmt: skip


# -- a model's features in the registry ------------------------------------------------------
def _version_used(registry: Any, view: str, version: int | None, recorded_at: Any) -> Any:
    """The version a model used: the pinned one, or the latest when its usage was recorded."""
    if version is not None:
        return registry.get(view, version)
    from registry_client.record import parse_time

    try:
        at = parse_time(recorded_at) if recorded_at else None
    except (TypeError, ValueError):
        at = None
    versions = registry.versions(view)
    if at is not None:
        earlier = [v for v in versions if v.created_at <= at]
        if earlier:
            return earlier[-1]
    return versions[-1]


def drift_for_model(
    registry: Any, model: str, current: pd.DataFrame, *, threshold: float = 0.2
) -> DriftReport:
    """Compare ``current`` with the statistics the registry recorded, at export, for each
    feature ``model`` uses (``registry.record_usage``), at the version it used: the pinned
    one, or the latest when the usage was recorded. Features are named ``view@version:feature``
    and read from ``current``'s ``view__feature`` column, or its plain ``feature`` column when
    no other feature of the model has that name. See ``drift_from_stats``.
    """
    if not isinstance(model, str) or not model:
        raise DriftError(
            f"drift: model must be a model name recorded with registry.record_usage, got {model!r}"
        )
    usage = [u for u in registry.usage(model) if isinstance(u, Mapping)]
    if not usage:
        raise DriftError(
            f"drift: model '{model}' has no features recorded in the registry {getattr(registry, 'url', '')}; "
            f"record them when you train it: ws.registry.record_usage('{model}', ['view:feature', ...])"
        )
    wanted: dict[tuple[str, int | None, str], list[str]] = {}
    for u in usage:
        view, feature, version = u.get("view"), u.get("feature"), u.get("version")
        if (
            not isinstance(view, str)
            or not isinstance(feature, str)
            or not (version is None or _is_count(version))
        ):
            continue  # a malformed usage row from the registry: nothing to check
        wanted.setdefault((view, version, str(u.get("recorded_at") or "")), []).append(feature)
    stats: dict[str, Mapping[str, Any] | None] = {}
    types: dict[str, str] = {}
    places: dict[str, tuple[str, str]] = {}
    notes: dict[str, str] = {}
    for (view, version, recorded_at), features in wanted.items():
        try:
            record = _version_used(registry, view, version, recorded_at)
        except NotFoundError:
            notes[f"{view}:{','.join(features)}"] = "the feature view is not in the registry"
            continue
        recorded = record.spec.get("stats")
        recorded = recorded if isinstance(recorded, Mapping) else {}
        schema = record.schema
        for feature in record.feature_names if "*" in features else features:
            key = f"{record.name}@{record.version}:{feature}"
            if feature not in schema:
                notes[key] = "the feature is not in this version of the view"
                continue
            stats[key] = recorded.get(feature) if isinstance(recorded.get(feature), Mapping) else None
            types[key] = schema[feature]
            places[key] = (record.name, feature)
    plain_counts: dict[str, int] = {}
    for _, feature in places.values():
        plain_counts[feature] = plain_counts.get(feature, 0) + 1
    columns = {
        key: [f"{view}__{feature}"] + ([feature] if plain_counts[feature] == 1 else [])
        for key, (view, feature) in places.items()
    }
    views = ", ".join(sorted({k.split(":", 1)[0] for k in places}))
    return drift_from_stats(
        stats, current, types=types, columns=columns, threshold=threshold, skipped=notes,
        reference=f"statistics recorded at export for model '{model}' ({views})",
    )  # fmt: skip
