"""Export feature views to the registry: the one function the button and ``%features export`` share,
and the **Export to registry** button itself.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .. import render
from ..errors import FeaturesError

if TYPE_CHECKING:
    from ..workspace import Workspace

__all__ = ["ExportedVersion", "export_views", "ExportButton", "message_of"]


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
            self.exported = export_views(self.ws, self.names)
        except Exception as exc:  # noqa: BLE001 - a click handler's error would vanish into the log
            self.error = message_of(exc)
            self.status.value = (
                f"<span style='color:var(--jp-error-color1,#c62828)'>✗ {render.esc(self.error)}</span>"
            )
        else:
            self.error = None
            done = ", ".join(
                f"<b>{render.esc(e.name)}</b> → version {e.version}"
                if e.version is not None
                else f"<b>{render.esc(e.name)}</b>"
                for e in self.exported
            )
            self.status.value = (
                f"<span style='color:var(--jp-success-color1,#2e7d32)'>✓ exported {done}</span>"
            )
        finally:
            self.button.disabled = False

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        return self.widget._repr_mimebundle_(**kwargs)

    def __repr__(self) -> str:
        return f"ExportButton({self.names})"
