"""Feature references: 'view:feature', 'view:*', 'view@3:feature'."""

from __future__ import annotations

import re
from dataclasses import dataclass

from .errors import FeatureReferenceError

__all__ = ["FeatureRef", "parse_ref", "group_refs"]

_REF = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)(?:@(\d+))?\s*:\s*(\*|[A-Za-z_][A-Za-z0-9_]*)\s*$")


@dataclass(frozen=True)
class FeatureRef:
    view: str
    feature: str  # '*' for all
    version: int | None = None

    def __str__(self) -> str:
        ver = f"@{self.version}" if self.version is not None else ""
        return f"{self.view}{ver}:{self.feature}"


def parse_ref(text: str) -> FeatureRef:
    if not isinstance(text, str):
        raise FeatureReferenceError(f"feature reference {text!r} must be a string like 'view:feature'")
    m = _REF.match(text)
    if not m:
        raise FeatureReferenceError(
            f"cannot read feature reference {text!r}; write 'view:feature', 'view:*' "
            "or 'view@3:feature' for a pinned version"
        )
    return FeatureRef(view=m.group(1), feature=m.group(3), version=int(m.group(2)) if m.group(2) else None)


def group_refs(refs: list[str] | str) -> dict[tuple[str, int | None], list[str]]:
    """Group references by (view, version), keeping first-seen order and dropping repeats."""
    if isinstance(refs, str):
        refs = [refs]
    if not refs:
        raise FeatureReferenceError("no features requested; pass e.g. ['user_spend:*']")
    groups: dict[tuple[str, int | None], list[str]] = {}
    seen_versions: dict[str, int | None] = {}
    for text in refs:
        ref = parse_ref(text)
        if ref.view in seen_versions and seen_versions[ref.view] != ref.version:
            raise FeatureReferenceError(
                f"feature view '{ref.view}' is requested at two versions "
                f"({seen_versions[ref.view]} and {ref.version}) in one call; pick one"
            )
        seen_versions[ref.view] = ref.version
        features = groups.setdefault((ref.view, ref.version), [])
        if ref.feature not in features:
            features.append(ref.feature)
    return groups
