"""What every pgtide screen shares: the route from a failed worker to the error modal."""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

from textual import on
from textual.screen import Screen
from textual.widgets import Button, Input
from textual.worker import Worker, WorkerState

if TYPE_CHECKING:
    from ..app.tui import PgtideApp
    from .services import Services
    from .state import WizardState


class PgtideScreen(Screen[None]):
    """Base screen. Workers started here report failures through ``PgtideApp.show_error`` only."""

    #: Shown in the header's sub-title.
    STEP = ""

    @property
    def pgtide(self) -> PgtideApp:
        return cast("PgtideApp", self.app)

    @property
    def services(self) -> Services:
        return self.pgtide.services

    @property
    def wizard(self) -> WizardState:
        return self.pgtide.wizard

    def on_screen_resume(self) -> None:
        self.app.sub_title = self.STEP
        if not self.pgtide.cursor_blink:
            for field in self.query(Input):
                field.cursor_blink = False

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        # Workers catch the errors they can show in place; anything else ends up here.
        if event.state == WorkerState.ERROR and event.worker.error is not None:
            self.pgtide.show_error(event.worker.error)


class WizardStep(PgtideScreen):
    """A wizard screen with Back (pop this step) and Next (``action_next``) buttons."""

    def action_next(self) -> None:
        raise NotImplementedError

    def action_back(self) -> None:
        self.app.pop_screen()

    @on(Button.Pressed, "#next")
    def _next_pressed(self) -> None:
        self.action_next()

    @on(Button.Pressed, "#back")
    def _back_pressed(self) -> None:
        self.action_back()
