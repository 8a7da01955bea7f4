"""How a windowed view's windows slide: for a few entities, each window's value at a few times
spread over the data — a table and an Altair line chart — so a person sees (t - w, t] move.

The values come from the same window engine as training frames, with the sampled entities at
the chosen times as label rows.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

from .sqltext import EVENT_TS, LABEL_TS, ROW, quote
from .windows import WindowPlan, value_class

if TYPE_CHECKING:
    import altair as alt
    import duckdb
    import pandas as pd

__all__ = ["window_slide", "slide_chart", "AT"]

#: The slide table's time column.
AT = "at"


def window_slide(
    con: duckdb.DuckDBPyConnection, plan: WindowPlan, *, entities: int = 3, times: int = 5
) -> pd.DataFrame:
    """The keys, AT and every feature for the ``entities`` entities with the most rows, at
    ``times`` times evenly spread over the data, the last at its last event time (``con`` holds
    the sources: the sandbox). Empty when the view has no rows."""
    import numpy as np
    import pandas as pd

    from .engines.duckdb.windows import window_features

    keys = ", ".join(quote(k) for k in plan.entity)
    present = " AND ".join([f"{EVENT_TS} IS NOT NULL", *(f"{quote(k)} IS NOT NULL" for k in plan.entity)])
    rows = f"(SELECT * FROM ({plan.relation_sql}) WHERE {present})"
    top = con.execute(
        f"SELECT {keys} FROM {rows} GROUP BY {keys} ORDER BY count(*) DESC, {keys} LIMIT {int(entities)}"
    ).df()
    span = con.execute(
        f"SELECT min(CAST({EVENT_TS} AS TIMESTAMP)), max(CAST({EVENT_TS} AS TIMESTAMP)) FROM {rows}"
    ).fetchall()[0]
    if not len(top) or span[0] is None:
        return pd.DataFrame(columns=[*plan.entity, AT, *plan.feature_names])
    first, last = pd.Timestamp(span[0]), pd.Timestamp(span[1])
    # evenly spread after the first event (where every window is still nearly empty) up to the last
    at = (
        pd.date_range(first, last, periods=max(int(times), 1) + 1)[1:]
        if last > first
        else pd.DatetimeIndex([last])
    )
    labels = top.loc[top.index.repeat(len(at))].reset_index(drop=True)
    labels[LABEL_TS] = np.tile(at.to_numpy(dtype="datetime64[us]"), len(top))
    labels[ROW] = np.arange(len(labels), dtype=np.int64)
    name = f"__jf_slide_{uuid.uuid4().hex[:10]}"
    con.register(name, labels)
    try:
        values = window_features(con, plan, labels=name)
    finally:
        con.unregister(name)
    out = labels[list(plan.entity)].copy()
    out[AT] = labels[LABEL_TS]
    for column in values.columns:
        out[column] = values[column].to_numpy()
    return out


def slide_chart(slide: pd.DataFrame, plan: WindowPlan, input_types: dict[str, str]) -> alt.FacetChart | None:
    """A line per window of each numeric aggregate over time, one panel per aggregate (rows)
    and entity (columns); None when nothing numeric is there to draw."""
    import altair as alt
    import pandas as pd

    numeric = [
        a for a in plan.aggregates
        if a.function not in ("min", "max") or value_class(input_types.get(a.input or "", "")) in ("int", "float")
    ]  # fmt: skip
    if slide.empty or not numeric:
        return None
    entity = slide[list(plan.entity)].astype(str).agg(", ".join, axis=1)
    parts = []
    for a in numeric:
        for w in plan.windows:
            parts.append(
                pd.DataFrame(
                    {
                        "entity": entity,
                        AT: slide[AT],
                        "aggregate": a.alias,
                        "window": w.text,
                        "value": pd.to_numeric(slide[f"{a.alias}_{w.text}"], errors="coerce").astype(float),
                    }
                )
            )
    data = pd.concat(parts, ignore_index=True)
    order = [w.text for w in plan.windows]
    line = (
        alt.Chart(data)
        .mark_line(point=True)
        .encode(
            x=alt.X(f"{AT}:T", title=None),
            y=alt.Y("value:Q", title=None),
            color=alt.Color("window:N", sort=order, title="window"),
            tooltip=["entity:N", f"{AT}:T", "aggregate:N", "window:N", "value:Q"],
        )
        .properties(width=170, height=90)
    )
    return line.facet(
        row=alt.Row("aggregate:N", sort=[a.alias for a in numeric], title=None),
        column=alt.Column("entity:N", title=", ".join(plan.entity)),
    ).resolve_scale(y="independent")
