"""Feature types: the small vocabulary every part of the product speaks."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

__all__ = ["Feature", "FEATURE_TYPES", "feature_type_of"]

FEATURE_TYPES = ("int64", "float64", "string", "bool", "timestamp", "list<float>", "categorical")

_INT = re.compile(r"^(U?(TINY|SMALL|BIG|HUGE)?INT(EGER)?\d*|INT\d+|LONG|SHORT)$")
_FLOAT = re.compile(r"^(DOUBLE|FLOAT\d*|REAL|DECIMAL.*|NUMERIC.*)$")
_LIST = re.compile(r"^(.*)\[\d*\]$")


def feature_type_of(duckdb_type: str) -> tuple[str, list[str] | None]:
    """Map a DuckDB type name to a feature type, and a vocabulary for categoricals."""
    t = duckdb_type.strip().upper()
    if t.startswith("ENUM("):
        inner = duckdb_type.strip()[5:-1]
        vocabulary = [v.strip().strip("'").replace("''", "'") for v in _split_enum(inner)]
        return "categorical", vocabulary
    if _INT.match(t):
        return "int64", None
    if _FLOAT.match(t):
        return "float64", None
    if t in ("BOOLEAN", "BOOL"):
        return "bool", None
    if t.startswith(("TIMESTAMP", "DATE", "DATETIME")):
        return "timestamp", None
    m = _LIST.match(t)
    if m or t.startswith("LIST("):
        return "list<float>", None
    return "string", None


def _split_enum(inner: str) -> list[str]:
    parts: list[str] = []
    current: list[str] = []
    quoted = False
    i = 0
    while i < len(inner):
        ch = inner[i]
        if ch == "'":
            if quoted and i + 1 < len(inner) and inner[i + 1] == "'":
                current.append("''")
                i += 2
                continue
            quoted = not quoted
        if ch == "," and not quoted:
            parts.append("".join(current))
            current = []
        else:
            current.append(ch)
        i += 1
    if current:
        parts.append("".join(current))
    return parts


@dataclass(frozen=True)
class Feature:
    """One typed output column of a feature view."""

    name: str
    type: str
    duckdb_type: str
    description: str = ""
    vocabulary: list[str] | None = field(default=None)

    def to_dict(self) -> dict[str, object]:
        d: dict[str, object] = {
            "name": self.name,
            "type": self.type,
            "duckdb_type": self.duckdb_type,
            "description": self.description,
        }
        if self.vocabulary is not None:
            d["vocabulary"] = list(self.vocabulary)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, object]) -> Feature:
        vocab = d.get("vocabulary")
        return cls(
            name=str(d["name"]),
            type=str(d["type"]),
            duckdb_type=str(d.get("duckdb_type", "")),
            description=str(d.get("description") or ""),
            vocabulary=[str(v) for v in vocab] if isinstance(vocab, list) else None,
        )
