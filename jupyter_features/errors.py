"""One exception hierarchy for the whole product.

Every message names the object, what was expected, and what to do about it.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable

__all__ = [
    "FeaturesError",
    "ConfigError",
    "SourceError",
    "UnknownSourceError",
    "UnknownColumnError",
    "UnsafeSQLError",
    "FeatureViewError",
    "UnknownFeatureViewError",
    "UnknownFeatureError",
    "FeatureReferenceError",
    "TTLError",
    "LabelFrameError",
    "RegistryError",
    "RegistryConflictError",
    "RegistryUnavailableError",
    "InvalidSpecError",
    "NotFoundError",
    "AuthError",
    "PermissionDeniedError",
    "OnlineStoreError",
    "NotMaterializedError",
    "MaterializationError",
    "MaterializationBusyError",
    "VersionMetadataError",
    "PushError",
    "EvaluationError",
    "DriftError",
    "EngineError",
    "TranspileError",
    "InvalidRequestError",
    "RequestTooLargeError",
    "ServerBusyError",
    "CheckError",
    "did_you_mean",
]


def did_you_mean(name: str, candidates: Iterable[str]) -> str:
    """Return ' (did you mean 'x'?)' for the closest candidate, or ''."""
    matches = difflib.get_close_matches(name, list(candidates), n=1, cutoff=0.6)
    return f" (did you mean '{matches[0]}'?)" if matches else ""


class FeaturesError(Exception):
    """Root of every error jupyter-features raises on purpose."""

    #: HTTP status a server answers with when this error reaches a client.
    status_code: int = 400


class ConfigError(FeaturesError):
    """features.toml, an environment variable or an argument is malformed."""


class SourceError(FeaturesError):
    """A source cannot be registered or read."""


class UnknownSourceError(SourceError):
    """A name was used as a source but no such source is registered."""

    status_code = 404


class UnknownColumnError(FeaturesError):
    """A column named by the user does not exist."""


class UnsafeSQLError(FeaturesError):
    """Feature SQL does something other than read registered sources."""


class FeatureViewError(FeaturesError):
    """A feature view definition is invalid."""


class UnknownFeatureViewError(FeatureViewError):
    status_code = 404


class UnknownFeatureError(FeatureViewError):
    status_code = 404


class FeatureReferenceError(FeaturesError):
    """A feature reference like 'view:feature' is malformed or ambiguous."""


class TTLError(FeatureViewError):
    """A TTL cannot be parsed or is not positive."""


class LabelFrameError(FeaturesError):
    """The label frame given to training_frame lacks what the join needs."""


class RegistryError(FeaturesError):
    """The registry refused or failed a request."""


class RegistryConflictError(RegistryError):
    status_code = 409


class RegistryUnavailableError(RegistryError):
    status_code = 503


class InvalidSpecError(RegistryError):
    """A feature view spec or registry request is malformed, oversize or of the wrong type."""

    status_code = 422


class NotFoundError(RegistryError):
    status_code = 404


class AuthError(RegistryError):
    status_code = 401


class PermissionDeniedError(RegistryError):
    status_code = 403


class OnlineStoreError(FeaturesError):
    """The online store cannot be reached or holds something unexpected."""

    status_code = 503


class NotMaterializedError(OnlineStoreError):
    """A feature view was read online before it was materialized to that store."""

    status_code = 404


class VersionMetadataError(OnlineStoreError):
    """The version a store serves lacks, or holds altered, metadata a request needs; materialize again."""

    status_code = 409


class PushError(FeaturesError):
    """Rows that cannot be pushed into a feature view; nothing was written."""


class MaterializationError(FeaturesError):
    """A materialization run failed; the previous version is still served."""

    status_code = 500


class MaterializationBusyError(MaterializationError):
    """Another materialization of the same view is running."""

    status_code = 409


class EvaluationError(FeaturesError):
    """A frame cannot be evaluated as asked."""


class DriftError(FeaturesError):
    """Two distributions cannot be compared as asked (empty frames, missing features, bad options)."""


class EngineError(FeaturesError):
    """An offline engine cannot run what was asked of it."""


class TranspileError(FeaturesError):
    """Feature SQL uses a construct that cannot be carried faithfully to another SQL dialect."""


class InvalidRequestError(FeaturesError):
    """An HTTP request is not what the endpoint takes: not JSON, the wrong shape or types."""


class RequestTooLargeError(InvalidRequestError):
    """An HTTP request's body is over the server's limit."""

    status_code = 413


class ServerBusyError(FeaturesError):
    """A server is at its limit of requests in flight; the client should retry later."""

    status_code = 503


class CheckError(FeaturesError):
    """A health check of an online store or a model cannot run as asked."""
