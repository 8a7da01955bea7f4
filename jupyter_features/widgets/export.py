"""Export feature views to the registry: the one function the buttons and ``%features export`` share,
and the **Export to registry** button itself.

``export_session`` is the one entry point of both buttons: the widget's, and the
JupyterLab notebook toolbar's, which runs it in the notebook's kernel and shows the
JSON it returns.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .. import render
from ..errors import FeaturesError

if TYPE_CHECKING:
    from ..workspace import Workspace

__all__ = ["ExportedVersion", "export_views", "export_session", "ExportButton", "message_of"]

#: What export_session says when the session has no feature view yet.
NOTHING_TO_EXPORT = (
    "this notebook's kernel has no feature views: define one with %%feature or "
    "jf.workspace().feature_view(...), run it, then export"
)


@dataclass(frozen=True)
class ExportedVersion:
    """The registry's answer for one exported view."""

    name: str
    version: int | None
    record: Any = None

    def __str__(self) -> str:
        return f"{self.name}@{self.version}" if self.version is not None else self.name


def export_views(ws: Workspace, names: Sequence[str] | None = None) -> list[ExportedVersion]:
    """Export ``names`` (default: every view of the session) with ``ws.export``; one entry per view."""
    wanted = list(names) if names else sorted(ws.views)
    if not wanted:
        raise FeaturesError(
            "there is no feature view to export yet; define one with %%feature or ws.feature_view"
        )
    for name in wanted:
        ws.get_view(name)  # names the unknown view and how to define it
    records = ws.export(wanted)
    return [ExportedVersion(n, records[n].version, records[n]) for n in wanted]


def export_session(ws: Workspace, names: Sequence[str] | None = None) -> dict[str, Any]:
    """Export ``names`` (default: every view) of ``ws`` (the toolbar button passes
    ``jf.workspace()``, the magics' workspace) and say what happened, as JSON-ready data;
    errors are answers, never raised.

    ``{"ok": True, "message": ..., "registry": URL, "versions": [{"name", "version", "unchanged"}]}``,
    or ``{"ok": False, "message": ...}`` with ``"empty": True`` when there was nothing to export.
    """
    before = {name: getattr(view, "version", None) for name, view in ws.views.items()}
    if not names and not before:
        return {"ok": False, "empty": True, "message": NOTHING_TO_EXPORT}
    try:
        exported = export_views(ws, names)
    except Exception as exc:  # noqa: BLE001 - the answer carries every failure, as one line
        return {"ok": False, "message": message_of(exc)}
    versions = [
        {
            "name": e.name,
            "version": e.version,
            "unchanged": e.version is not None and before.get(e.name) == e.version,
        }
        for e in exported
    ]
    done = ", ".join(
        f"{v['name']} → version {v['version']}" + (" (unchanged)" if v["unchanged"] else "") for v in versions
    )
    registry = str(getattr(getattr(ws, "registry", None), "url", "") or "")  # connected by the export
    return {"ok": True, "message": f"exported {done}", "registry": registry, "versions": versions}


def message_of(exc: BaseException) -> str:
    """One line for an error shown in a widget: our messages as they are, others with their type."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    if isinstance(exc, FeaturesError):
        return text or type(exc).__name__
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class ExportButton:
    """An **Export to registry** button for some feature views, with a status line beside it."""

    def __init__(
        self, ws: Workspace, names: Sequence[str], *, description: str = "Export to registry"
    ) -> None:
        import ipywidgets as widgets

        self.ws = ws
        self.names = list(names)
        self.exported: list[ExportedVersion] = []
        self.error: str | None = None
        self.button = widgets.Button(
            description=description,
            icon="cloud-upload",
            button_style="primary",
            tooltip=f"export {', '.join(self.names) or 'every view'} to {ws.settings.registry_url}",
            layout=widgets.Layout(width="auto"),
        )
        self.status = widgets.HTML("")
        self.widget = widgets.HBox([self.button, self.status])
        self.button.on_click(self._clicked)

    def click(self) -> None:
        self.button.click()

    def _clicked(self, _button: Any = None) -> None:
        self.button.disabled = True
        self.status.value = "exporting…"
        try:
            result = export_session(self.ws, self.names)
        finally:
            self.button.disabled = False
        if not result["ok"]:
            self.error = str(result["message"])
            self.status.value = (
                f"<span style='color:var(--jp-error-color1,#c62828)'>✗ {render.esc(self.error)}</span>"
            )
            return
        self.error = None
        self.exported = [ExportedVersion(v["name"], v["version"]) for v in result["versions"]]
        done = ", ".join(
            f"<b>{render.esc(v['name'])}</b>"
            + (f" → version {v['version']}" if v["version"] is not None else "")
            + (" (unchanged)" if v["unchanged"] else "")
            for v in result["versions"]
        )
        self.status.value = f"<span style='color:var(--jp-success-color1,#2e7d32)'>✓ exported {done}</span>"

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        return self.widget._repr_mimebundle_(**kwargs)

    def __repr__(self) -> str:
        return f"ExportButton({self.names})"
