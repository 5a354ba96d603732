"""Start: saved profiles (load, duplicate, delete, open the dashboard) or a new migration."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.widgets import Button, DataTable, Footer, Header, Static

from ..widgets.live_table import LiveTable
from ..widgets.modals import ConfirmModal, NamePrompt
from .base import PgtideScreen
from .messages import MigrationPlanRead, MigrationsListed, ProfilesChanged, ProfilesListed
from .requests import RequestTracker, Ticket

if TYPE_CHECKING:
    from ..core.model.profiles import ProfileSummary

INTRO = (
    "Move a live PostgreSQL database to another server with near-zero downtime: a consistent "
    "snapshot copy, then logical replication of every change since that snapshot, and a row-by-row "
    "proof that nothing was lost."
)


class StartScreen(PgtideScreen):
    STEP = "Start"

    BINDINGS = [
        Binding("n", "new_migration", "New migration"),
        Binding("enter", "load_profile", "Load", show=True),
        Binding("d", "duplicate_profile", "Duplicate"),
        Binding("x,delete", "delete_profile", "Delete"),
        Binding("b", "open_dashboard", "Dashboard"),
        Binding("m", "show_run", "Running migration"),
        Binding("r", "refresh", "Refresh", show=False),
        Binding("o", "open_migration", "Open migration"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.profiles: list[ProfileSummary] = []
        self.migrations: list[dict[str, Any]] = []
        #: A refresh right after a delete must not be overtaken by the listing from before it.
        self.requests = RequestTracker()

    def compose(self) -> ComposeResult:
        yield Header()
        with Vertical(id="start-body"):
            yield Static(INTRO, id="start-intro", markup=False)
            yield Static("Saved profiles", classes="section-title")
            table = LiveTable(id="profiles", cursor_type="row", zebra_stripes=True)
            yield table
            yield Static("", id="profiles-note", markup=False)
            with Vertical(id="migrations-box"):
                yield Static("Recorded migrations (o opens the highlighted one's dashboard)", classes="section-title")
                yield LiveTable(id="migrations", cursor_type="row", zebra_stripes=True)
            with Horizontal(classes="button-row"):
                yield Button("New migration", id="new", variant="primary")
                yield Button("Load", id="load")
                yield Button("Duplicate", id="duplicate")
                yield Button("Delete", id="delete", variant="error")
                yield Button("Dashboard", id="dashboard")
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one("#profiles", DataTable)
        table.add_column("Profile", key="name")
        # Before the endpoints, with its full width: long URLs pushed it off and cut it ("2026-12-01 05:").
        table.add_column("Modified", key="modified", width=16)
        table.add_column("Source", key="source")
        table.add_column("Target", key="target")
        migrations = self.query_one("#migrations", DataTable)
        # The long URLs last: at 80 columns the states and the worker stay in sight.
        for label, key in (("Migration", "id"), ("Databases", "states"), ("Worker", "worker"),
                           ("Source → target", "pair")):
            migrations.add_column(label, key=key)
        self.query_one("#migrations-box").display = False  # until there is one
        self._enable_profile_buttons()

    def on_screen_resume(self) -> None:
        super().on_screen_resume()
        # Back from the wizard, a profile may have been saved (or one deleted elsewhere).
        self.action_refresh()
        self.refresh_bindings()

    def _enable_profile_buttons(self) -> None:
        for button_id in ("#load", "#duplicate", "#delete", "#dashboard"):
            self.query_one(button_id, Button).disabled = not self.profiles

    # -- profiles ---------------------------------------------------------------------------

    def action_refresh(self) -> None:
        self._list_profiles(self.requests.start("profiles"))
        self._list_migrations()

    @work(thread=True, exit_on_error=False, exclusive=True, group="migrations",
          description="Reading the recorded migrations")
    def _list_migrations(self) -> None:
        self.post_message(MigrationsListed(self.services.list_migrations()))

    @on(MigrationsListed)
    def _show_migrations(self, message: MigrationsListed) -> None:
        self.migrations = message.migrations
        table = self.query_one("#migrations", DataTable)
        table.clear()
        for entry in self.migrations:
            states = ", ".join(f"{db} {state}" for db, state in entry["databases"].items()) or "-"
            worker = entry.get("worker", {})
            shown = {"alive": f"running ({worker.get('command')})", "none": "-"}.get(worker.get("state"),
                                                                                      worker.get("state", "-"))
            pair = f"{entry['source']} → {entry['target']}" if entry.get("source") else entry.get("recorded_by", "")
            table.add_row(entry["id"], states, shown, pair, key=entry["id"])
        self.query_one("#migrations-box").display = bool(self.migrations)
        self.refresh_bindings()

    def action_open_migration(self) -> None:
        table = self.query_one("#migrations", DataTable)
        if not self.migrations or not 0 <= table.cursor_row < len(self.migrations):
            return
        entry = self.migrations[table.cursor_row]
        if entry.get("kind") == "foreign":
            self.pgtide.open_foreign_dashboard(entry["id"])
            return
        self._read_migration(entry["id"])

    @work(thread=True, exit_on_error=False, exclusive=True, group="migrations",
          description="Reading a recorded migration's plan")
    def _read_migration(self, migration_id: str) -> None:
        self.post_message(MigrationPlanRead(self.services.migration_plan(migration_id)))

    @on(MigrationPlanRead)
    def _open_migration(self, message: MigrationPlanRead) -> None:
        self.pgtide.open_dashboard(message.plan)

    @work(thread=True, exit_on_error=False, exclusive=True, group="profiles", description="Reading saved profiles")
    def _list_profiles(self, ticket: Ticket) -> None:
        self.post_message(ProfilesListed(ticket, self.services.list_profiles()))

    @on(ProfilesListed)
    def _show_profiles(self, message: ProfilesListed) -> None:
        if not self.requests.is_current(message.ticket):
            return
        self.profiles = message.profiles
        table = self.query_one("#profiles", DataTable)
        table.clear()
        for profile in self.profiles:
            modified = profile.modified.astimezone().strftime("%Y-%m-%d %H:%M")
            if profile.error:
                table.add_row(profile.name, modified, "✖ " + profile.error, "", key=profile.name)
            else:
                table.add_row(profile.name, modified, profile.source, profile.target, key=profile.name)
        note = self.query_one("#profiles-note", Static)
        if self.profiles:
            note.update("Enter loads the highlighted profile into the wizard; b opens its dashboard.")
        else:
            note.update("No saved profiles yet. Press n to start a new migration; "
                        "the review step can save it as a profile.")
        self._enable_profile_buttons()
        if self.profiles:
            table.focus()
        else:
            self.query_one("#new", Button).focus()
        self.refresh_bindings()

    @property
    def highlighted(self) -> str | None:
        table = self.query_one("#profiles", DataTable)
        if not self.profiles or table.cursor_row < 0 or table.cursor_row >= len(self.profiles):
            return None
        return self.profiles[table.cursor_row].name

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in ("load_profile", "duplicate_profile", "delete_profile", "open_dashboard"):
            return self.highlighted is not None
        if action == "show_run":
            return self.pgtide.migration is not None
        if action == "open_migration":
            return bool(self.migrations)
        return True

    # -- actions ------------------------------------------------------------------------------

    def action_new_migration(self) -> None:
        self.pgtide.new_wizard()

    def action_load_profile(self) -> None:
        name = self.highlighted
        if name is not None:
            self.pgtide.load_profile(name, dashboard=False)

    def action_open_dashboard(self) -> None:
        name = self.highlighted
        if name is not None:
            self.pgtide.load_profile(name, dashboard=True)

    def action_show_run(self) -> None:
        self.pgtide.show_run()

    def action_duplicate_profile(self) -> None:
        name = self.highlighted
        if name is None:
            return

        def chosen(new_name: str | None) -> None:
            if new_name:
                self._duplicate(name, new_name)

        self.app.push_screen(NamePrompt(f"Duplicate profile {name} as", value=f"{name}-copy",
                                        hint="Letters, digits, '-', '_' or '.'"), chosen)

    @work(thread=True, exit_on_error=False, description="Duplicating a profile")
    def _duplicate(self, name: str, new_name: str) -> None:
        self.services.duplicate_profile(name, new_name)
        self.post_message(ProfilesChanged(f"Profile {name} duplicated as {new_name}"))

    def action_delete_profile(self) -> None:
        name = self.highlighted
        if name is None:
            return

        def answered(yes: bool | None) -> None:
            if yes:
                self._delete(name)

        self.app.push_screen(
            ConfirmModal(f"Delete profile {name}?",
                         "The profile file is removed. Passwords stored in the OS keyring stay: they belong to "
                         "the servers, and other profiles may use them.", yes="Delete"),
            answered,
        )

    @work(thread=True, exit_on_error=False, description="Deleting a profile")
    def _delete(self, name: str) -> None:
        self.services.delete_profile(name)
        self.post_message(ProfilesChanged(f"Profile {name} deleted"))

    @on(ProfilesChanged)
    def _profiles_changed(self, message: ProfilesChanged) -> None:
        self.notify(message.notice, timeout=4)
        self.action_refresh()

    # -- buttons --------------------------------------------------------------------------------

    @on(Button.Pressed, "#new")
    def _new(self) -> None:
        self.action_new_migration()

    @on(Button.Pressed, "#load")
    def _load(self) -> None:
        self.action_load_profile()

    @on(Button.Pressed, "#duplicate")
    def _duplicate_pressed(self) -> None:
        self.action_duplicate_profile()

    @on(Button.Pressed, "#delete")
    def _delete_pressed(self) -> None:
        self.action_delete_profile()

    @on(Button.Pressed, "#dashboard")
    def _dashboard(self) -> None:
        self.action_open_dashboard()

    @on(DataTable.RowSelected, "#profiles")
    def _row_selected(self) -> None:
        self.action_load_profile()
