"""Request and response bodies of the registry's REST API (they make the OpenAPI at /docs).

The models check shape, types and sizes (422 before any work); the registry checks
the rest of a spec again, so a direct SQL client gets the same answers.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from registry_client.spec import LIMITS

__all__ = [
    "ActivityIn", "ActivityOut", "ApplyIn", "FeatureIn", "Health", "ImportIn", "LineageOut",
    "RecordIn", "RecordOut", "SpecIn", "UsageIn", "UsageOut", "NAME_PATTERN",
]  # fmt: skip

NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*$"
Name = Annotated[str, Field(pattern=NAME_PATTERN, max_length=LIMITS["name"])]
Short = Annotated[str, Field(min_length=1, max_length=LIMITS["short"])]
#: Entity keys, timestamps and feature names: identifiers, like view names.
Column = Annotated[
    str, Field(pattern=NAME_PATTERN, max_length=LIMITS["short"], description="an identifier, e.g. user_id")
]
Text = Annotated[str, Field(max_length=LIMITS["text"])]
FeatureType = Literal["int64", "float64", "string", "bool", "timestamp", "list<float>", "categorical"]


class FeatureIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Column
    type: FeatureType
    duckdb_type: Annotated[str, Field(max_length=LIMITS["short"])] = ""
    description: Text = ""
    vocabulary: Annotated[list[Short], Field(max_length=LIMITS["vocabulary"])] | None = None


class SpecIn(BaseModel):
    """``FeatureView.to_spec()``; extra fields are kept as they are (plain JSON)."""

    model_config = ConfigDict(extra="allow")

    name: Name
    sql: Annotated[str, Field(min_length=1, max_length=LIMITS["sql"])]
    entity: Annotated[list[Column], Field(min_length=1, max_length=LIMITS["keys"])]
    timestamp: Column
    created_timestamp: Column | None = None
    ttl: Annotated[str, Field(max_length=LIMITS["short"])] | None = Field(None, examples=["30d"])
    description: Text = ""
    owner: Annotated[str, Field(max_length=LIMITS["short"])] = ""
    tags: Annotated[list[Short], Field(max_length=LIMITS["tags"])] = []
    features: Annotated[list[FeatureIn], Field(min_length=1, max_length=LIMITS["features"])]
    lineage: Annotated[dict[Column, list[str]], Field(max_length=LIMITS["features"])] = {}
    sources: Annotated[list[Short], Field(max_length=LIMITS["features"])] = []
    windows: (
        Annotated[
            list[Annotated[str, Field(min_length=1, max_length=32, pattern=r"^(?:[0-9]+[A-Za-z]+)+$")]],
            Field(max_length=LIMITS["windows"]),
        ]
        | None
    ) = Field(
        None, examples=[["1h", "24h", "7d"]], description="a windowed view's windows; absent for a plain view"
    )


class ApplyIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    spec: SpecIn
    created_by: Annotated[str, Field(max_length=256)] | None = None


class RecordOut(BaseModel):
    """One version of a feature view."""

    name: str
    version: int
    created_at: datetime
    created_by: str
    hash: str
    spec: dict[str, Any]


class RecordIn(BaseModel):
    """A version with its provenance, as export_yaml writes it."""

    model_config = ConfigDict(extra="forbid")

    name: Name
    version: Annotated[int, Field(ge=1, le=2**31 - 1)]
    created_at: datetime
    created_by: Annotated[str, Field(max_length=256)]
    hash: Annotated[str, Field(max_length=64)]
    spec: SpecIn


class ImportIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    records: Annotated[list[RecordIn], Field(max_length=100_000)]


class UsageIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: Short
    features: Annotated[list[Annotated[str, Field(max_length=LIMITS["short"] * 2)]], Field(max_length=20_000)]


class UsageOut(BaseModel):
    model: str
    view: str
    feature: str
    version: int | None
    recorded_at: str


class ActivityIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: Annotated[str, Field(min_length=1, max_length=64)] = Field(examples=["export", "materialize"])
    detail: dict[str, Any] = {}


class ActivityOut(BaseModel):
    id: int
    kind: str
    at: str
    actor: str
    detail: dict[str, Any]


class LineageOut(BaseModel):
    name: str
    version: int
    sources: list[str]
    features: dict[str, list[str]]
    used_by: dict[str, list[str]]


class Health(BaseModel):
    status: str
    version: str
    store: str
    schema_version: int
    auth: bool
    worker: int = Field(description="the id of the server process that answered")
