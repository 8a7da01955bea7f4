"""The feature server's OpenAPI document (served at /openapi.json, browsable at /docs)."""

from __future__ import annotations

from typing import Any

from .push_request import MAX_ROWS
from .read_request import MAX_ENTITIES, MAX_FEATURES

__all__ = ["document"]

_ERROR = {
    "type": "object",
    "properties": {"error": {"type": "string"}, "type": {"type": "string", "example": "InvalidRequestError"}},
    "required": ["error", "type"],
}
_KEY = {"oneOf": [{"type": "integer", "format": "int64"}, {"type": "string"}]}


def _errors(*statuses: int) -> dict[str, Any]:
    text = {
        400: "Malformed request or an entity key not of its view's key type",
        401: "A bearer token is needed or invalid",
        403: "The token does not grant the scope the route needs ('read'; 'write' to push)",
        404: "A view or feature is not in the online store",
        409: "The version served lacks, or holds altered, metadata the push needs: materialize the view again",
        413: "Request body over the limit",
        503: "The store is unreachable, or the server is at its limit of reads in flight (see Retry-After)",
    }
    return {
        str(s): {
            "description": text[s],
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
        }
        for s in statuses
    }


def document(version: str, prefix: str) -> dict[str, Any]:
    request = {
        "type": "object",
        "required": ["features", "entities"],
        "additionalProperties": False,
        "properties": {
            "features": {
                "type": "array",
                "items": {"type": "string"},
                "minItems": 1,
                "maxItems": MAX_FEATURES,
                "example": ["user_spend:spend_7d", "user_profile:*"],
                "description": "Feature references: 'view:feature', 'view:*' or a pinned 'view@3:feature'",
            },
            "entities": {
                "description": (
                    f"Entity keys, at most {MAX_ENTITIES:,}: a list of objects or one list per key column. "
                    "An int64 key must be a JSON integer, a string key a JSON string."
                ),
                "oneOf": [
                    {"type": "array", "items": {"type": "object", "additionalProperties": _KEY}},
                    {"type": "object", "additionalProperties": {"type": "array", "items": _KEY}},
                ],
                "example": [{"user_id": 42}],
            },
            "at": {
                "type": ["string", "null"],
                "format": "date-time",
                "description": "Read as of this time (ISO 8601; default now): each entity's latest row at or "
                "before it, null past the view's TTL counted back from it",
                "example": "2024-01-10T12:00:00Z",
            },
        },
    }
    push = {
        "type": "object",
        "required": ["view", "rows"],
        "additionalProperties": False,
        "properties": {
            "view": {"type": "string", "example": "user_spend"},
            "rows": {
                "type": "array",
                "minItems": 1,
                "maxItems": MAX_ROWS,
                "items": {"type": "object"},
                "description": "Each row: the view's entity keys, its timestamp (and created timestamp) as "
                "ISO 8601 text, and every feature (null allowed), typed strictly; for a windowed view, its "
                "keys, timestamp and the columns its aggregates read",
                "example": [{"user_id": 42, "ts": "2024-01-10T12:00:00", "spend_7d": 12.5}],
            },
        },
    }
    results = {
        "type": "object",
        "properties": {
            "results": {
                "type": "object",
                "description": "One list per 'view__feature', in entity order; null for an unknown entity. "
                "Timestamps are ISO 8601 text, NaN and infinite floats null.",
                "additionalProperties": {"type": "array", "items": {}},
                "example": {"user_spend__spend_7d": [12.5]},
            }
        },
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "jupyter-features feature server",
            "version": version,
            "description": "Latest feature values by entity key, from the online store.",
        },
        "paths": {
            f"{prefix}/online-features": {
                "post": {
                    "tags": ["online"],
                    "summary": "Read features by entity key",
                    "security": [{"bearer": []}],
                    "requestBody": {"required": True, "content": {"application/json": {"schema": request}}},
                    "responses": {
                        "200": {
                            "description": "Feature values",
                            "content": {"application/json": {"schema": results}},
                        },
                        **_errors(400, 401, 403, 404, 413, 503),
                    },
                }
            },
            f"{prefix}/push": {
                "post": {
                    "tags": ["online"],
                    "summary": "Push rows into the version served: visible to the next read, all at once",
                    "security": [{"bearer": []}],
                    "requestBody": {"required": True, "content": {"application/json": {"schema": push}}},
                    "responses": {
                        "200": {"description": "Pushed: the version it went into and its journal number"},
                        **_errors(400, 401, 403, 404, 409, 413, 503),
                    },
                }
            },
            "/health": {
                "get": {
                    "tags": ["server"],
                    "summary": "Store reachable, and the views served with their version and end",
                    "responses": {"200": {"description": "Healthy"}, **_errors(503)},
                }
            },
            "/metrics": {
                "get": {
                    "tags": ["server"],
                    "summary": "Prometheus metrics of every worker",
                    "security": [{"bearer": []}],
                    "responses": {"200": {"description": "Prometheus text format"}, **_errors(401, 403)},
                }
            },
        },
        "components": {
            "schemas": {"Error": _ERROR},
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }
