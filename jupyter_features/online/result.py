"""The answer of an online read: one list of values per feature, in entity-row order."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

    from .layout import OnlineTable

__all__ = ["OnlineResult"]


class OnlineResult:
    """Feature values read online. ``to_dict()`` gives ``{"view__feature": [...]}`` with None
    for unknown entities; ``to_pandas()`` adds the entity key columns in front."""

    __slots__ = ("_columns", "_rows", "_parts")

    def __init__(
        self,
        columns: dict[str, list[Any]],
        entity_rows: Sequence[Mapping[str, Any]] = (),
        parts: Sequence[tuple[OnlineTable, Sequence[str]]] = (),
    ) -> None:
        self._columns = columns
        self._rows = entity_rows
        self._parts = parts  # (version read, feature names) per view

    def to_dict(self) -> dict[str, list[Any]]:
        return dict(self._columns)

    @property
    def tables(self) -> list[OnlineTable]:
        """The version of each view this result was read from."""
        return [table for table, _ in self._parts]

    @property
    def keys(self) -> list[str]:
        """The entity key columns of the views read."""
        out: list[str] = []
        for table, _ in self._parts:
            out += [k for k in table.entity if k not in out]
        return out

    @property
    def types(self) -> dict[str, str]:
        """Feature type of each output column (int64, float64, string, bool, timestamp, ...)."""
        out = {}
        for table, names in self._parts:
            by_name = {f.name: f.type for f in table.features}
            out.update({f"{table.view}__{n}": by_name[n] for n in names})
        return out

    @property
    def versions(self) -> dict[str, int]:
        """The online version each view was read from."""
        return {table.view: table.version for table, _ in self._parts}

    def __len__(self) -> int:
        return len(self._rows)

    def __getitem__(self, column: str) -> list[Any]:
        return self._columns[column]

    def to_pandas(self) -> pd.DataFrame:
        import pandas as pd

        types = self.types
        data: dict[str, Any] = {k: [row.get(k) for row in self._rows] for k in self.keys}
        for name, values in self._columns.items():
            kind = types.get(name)
            if kind == "int64" and all(v is not None for v in values):
                data[name] = pd.array(values, dtype="int64")
            elif kind == "int64":
                data[name] = pd.array(values, dtype="Int64")
            elif kind == "bool" and any(v is None for v in values):
                data[name] = pd.array(values, dtype="boolean")
            elif kind == "timestamp":
                data[name] = pd.to_datetime(pd.Series(values, dtype="object"))
            elif kind == "float64":
                data[name] = pd.array([float("nan") if v is None else v for v in values], dtype="float64")
            else:
                data[name] = pd.Series(values, dtype="object") if kind in ("list<float>",) else values
        return pd.DataFrame(data)

    def __repr__(self) -> str:
        cols = ", ".join(self._columns)
        return f"OnlineResult({len(self._rows)} entities × {len(self._columns)} features: {cols})"
