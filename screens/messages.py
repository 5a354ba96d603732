"""Typed messages: how thread workers hand their results back to the UI thread.

A worker never touches a widget: it posts one of these (``post_message`` is thread-safe) and
a handler on the UI thread renders it. High-rate ones (copy progress, verify progress, run
and dashboard refreshes) are replaceable, so a burst collapses into the newest.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from textual.message import Message

from ..core.infra.errors import PgtideError
from ..core.infra.events import Event, TableProgress

if TYPE_CHECKING:
    from ..core.catalog.discovery import DatabaseCatalog, ServerCatalog
    from ..core.catalog.estimate import Estimate
    from ..core.catalog.filtercheck import FilterCheck
    from ..core.catalog.scope import Scope
    from ..core.catalog.server import ServerInfo
    from ..core.engine.migrate import DatabaseResult
    from ..core.engine.validate import Report
    from ..core.foreign.endpoint import ForeignEndpoint
    from ..core.foreign.plan import ForeignPlan
    from ..core.foreign.session import ForeignStatus
    from ..core.foreign.source import CaptureCheck, SourceTable
    from ..core.foreign.verify import ForeignVerifyReport, TableVerdict
    from ..core.infra.endpoint import Endpoint
    from ..core.model.plan import Plan
    from ..core.model.profiles import Profile, ProfileSummary
    from ..core.monitor.poll import MigrationStatus
    from ..core.verify.compare import TableResult, VerifyReport
    from .requests import Ticket
    from .services import StatusSource
    from .state import EndpointFields, Side, TableKey, WizardState


# -- start -----------------------------------------------------------------------------------


class MigrationsListed(Message):
    """The migrations recorded on this machine, as plain data."""

    def __init__(self, migrations: list[dict[str, Any]]) -> None:
        super().__init__()
        self.migrations = migrations


class MigrationPlanRead(Message):
    def __init__(self, plan: Plan) -> None:
        super().__init__()
        self.plan = plan


class ProfilesListed(Message):
    def __init__(self, ticket: Ticket, profiles: list[ProfileSummary]) -> None:
        super().__init__()
        self.ticket = ticket
        self.profiles = profiles


class ProfileOpened(Message):
    """A profile was read and its stored passwords looked up: the wizard can start from it."""

    def __init__(self, state: WizardState, warnings: tuple[str, ...]) -> None:
        super().__init__()
        self.state = state
        self.warnings = warnings


class DashboardRequested(Message):
    """Open the dashboard of this plan (a profile's, with its stored passwords)."""

    def __init__(self, plan: Plan) -> None:
        super().__init__()
        self.plan = plan


class ProfileSaved(Message):
    def __init__(self, profile: Profile) -> None:
        super().__init__()
        self.profile = profile


class ProfilesChanged(Message):
    """A profile was saved, duplicated or deleted (``notice`` says which, for the user)."""

    def __init__(self, notice: str) -> None:
        super().__init__()
        self.notice = notice


# -- connect ---------------------------------------------------------------------------------


class EndpointParsed(Message):
    """A pasted URL, as form fields; ``url`` is the same URL without any secret."""

    def __init__(self, ticket: Ticket, side: Side, fields: EndpointFields, url: str) -> None:
        super().__init__()
        self.ticket = ticket
        self.side = side
        self.fields = fields
        self.url = url


class EndpointRejected(Message):
    def __init__(self, ticket: Ticket, side: Side, error: PgtideError) -> None:
        super().__init__()
        self.ticket = ticket
        self.side = side
        self.error = error


class ServerProbed(Message):
    def __init__(self, ticket: Ticket, side: Side, endpoint: Endpoint, info: ServerInfo) -> None:
        super().__init__()
        self.ticket = ticket
        self.side = side
        self.endpoint = endpoint
        self.info = info


class ServerProbeFailed(Message):
    def __init__(self, ticket: Ticket, side: Side, error: PgtideError) -> None:
        super().__init__()
        self.ticket = ticket
        self.side = side
        self.error = error


class PasswordRemembered(Message):
    def __init__(self, side: Side, stored: bool, explanation: str) -> None:
        super().__init__()
        self.side = side
        self.stored = stored
        self.explanation = explanation


class KeyringChecked(Message):
    """Whether passwords can be remembered here, as one sentence for the connect screen."""

    def __init__(self, text: str, available: bool = True) -> None:
        super().__init__()
        self.text = text
        self.available = available


class NextBlocked(Message):
    """Next on a step cannot go on: ``reason`` says why, in words."""

    def __init__(self, ticket: Ticket, reason: str) -> None:
        super().__init__()
        self.ticket = ticket
        self.reason = reason


class EndpointsReady(Message):
    """Both forms parsed into endpoints: the wizard may move on."""

    def __init__(self, ticket: Ticket, source: Endpoint, target: Endpoint) -> None:
        super().__init__()
        self.ticket = ticket
        self.source = source
        self.target = target


class ForeignSourceParsed(Message):
    """The source's URL box names a foreign source (``endpoint`` keeps a typed password in memory)."""

    def __init__(self, ticket: Ticket, endpoint: ForeignEndpoint) -> None:
        super().__init__()
        self.ticket = ticket
        self.endpoint = endpoint


class ForeignSourceTested(Message):
    def __init__(self, ticket: Ticket, endpoint: ForeignEndpoint, tables: list[SourceTable],
                 capture: CaptureCheck) -> None:
        super().__init__()
        self.ticket = ticket
        self.endpoint = endpoint
        self.tables = tables
        self.capture = capture


class ForeignSourceReady(Message):
    """Next with a foreign source: both sides answered."""

    def __init__(self, ticket: Ticket, source: ForeignEndpoint, target: Endpoint) -> None:
        super().__init__()
        self.ticket = ticket
        self.source = source
        self.target = target


# -- pick / filters ----------------------------------------------------------------------------


class DatabasesListed(Message):
    """The databases of ``source`` (the server they were read from, to tell a stale answer)."""

    def __init__(self, source: Endpoint, server: ServerCatalog) -> None:
        super().__init__()
        self.source = source
        self.server = server


class CatalogLoaded(Message):
    def __init__(self, source: Endpoint, database: str, catalog: DatabaseCatalog) -> None:
        super().__init__()
        self.source = source
        self.database = database
        self.catalog = catalog


class FilterChecked(Message):
    """The server's verdict on one filter (``which``: the row or the time filter) of table ``key``."""

    def __init__(self, ticket: Ticket, key: TableKey, which: str, check: FilterCheck | None,
                 error: PgtideError | None) -> None:
        super().__init__()
        self.ticket = ticket
        self.which = which
        self.key = key
        self.check = check
        self.error = error


# -- review ----------------------------------------------------------------------------------


#: One line of the checklist: (status, name, observed, remedy, database).
CheckLine = tuple[str, str, str, str, str | None]


class CheckArrived(Message):
    """A check of validation ``ticket``, as it arrives (dropped if that request was superseded)."""

    def __init__(self, ticket: Ticket, line: CheckLine) -> None:
        super().__init__()
        self.ticket = ticket
        self.line = line


class ValidationFinished(Message):
    """Validation ``ticket`` ended: its plan, report and estimate travel together, or not at all."""

    def __init__(self, ticket: Ticket, plan: Plan, report: Report, estimate: Estimate | None) -> None:
        super().__init__()
        self.ticket = ticket
        self.plan = plan
        self.report = report
        self.estimate = estimate


class ValidationFailed(Message):
    """Validation ``ticket`` could not run (shown only while it is still the current request)."""

    def __init__(self, ticket: Ticket, error: PgtideError) -> None:
        super().__init__()
        self.ticket = ticket
        self.error = error


# -- the App's long jobs ------------------------------------------------------------------------


class CoreEventArrived(Message):
    """A core event of a running init (phases, logs, finished tables)."""

    def __init__(self, event: Event) -> None:
        super().__init__()
        self.event = event


class TableProgressed(Message):
    """Copy progress of one table: only the newest per table matters."""

    def __init__(self, event: TableProgress) -> None:
        super().__init__()
        self.event = event

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, TableProgressed) and message.event.key == self.event.key


class MigrationFinished(Message):
    def __init__(self, results: list[DatabaseResult]) -> None:
        super().__init__()
        self.results = results


class MigrationStopped(Message):
    """init ended without streaming: failed (``error``) or cancelled and torn down (``removed``)."""

    def __init__(self, error: PgtideError | None, removed: list[str], cancelled: bool) -> None:
        super().__init__()
        self.error = error
        self.removed = removed
        self.cancelled = cancelled


class DashboardOpened(Message):
    """The migration's tables are known and a monitor is connected: polling can start."""

    def __init__(self, plan: Plan, scope: Scope, monitor: StatusSource, request: int = 0,
                 history: tuple[dict[str, list[float]], dict[str, Any] | None] = ({}, None)) -> None:
        super().__init__()
        self.plan = plan
        self.scope = scope
        self.monitor = monitor
        #: Which open_dashboard() this answers: an older one's monitor is closed, not shown.
        self.request = request
        #: What the record remembers: lag samples per database, the last verify's summary.
        self.history = history


class StatusPolled(Message):
    def __init__(self, status: MigrationStatus) -> None:
        super().__init__()
        self.status = status


class PollFailed(Message):
    def __init__(self, error: PgtideError) -> None:
        super().__init__()
        self.error = error


class VerifyProgressed(Message):
    """Which table verify is on; only the newest matters."""

    def __init__(self, done: int, total: int, current: str) -> None:
        super().__init__()
        self.done = done
        self.total = total
        self.current = current

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, VerifyProgressed)


class TableVerifiedMessage(Message):
    def __init__(self, result: TableResult) -> None:
        super().__init__()
        self.result = result


class VerifyFinished(Message):
    def __init__(self, report: VerifyReport | None, error: PgtideError | None) -> None:
        super().__init__()
        self.report = report
        self.error = error


class TeardownFinished(Message):
    def __init__(self, removed: list[str]) -> None:
        super().__init__()
        self.removed = removed


# -- App to screens ------------------------------------------------------------------------------


class RunUpdated(Message):
    """The App's run model changed: re-render from it. Bursts collapse into one."""

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, RunUpdated)


class DashboardUpdated(Message):
    """The App's dashboard model changed (``what``: status, verify, tables, teardown)."""

    def __init__(self, what: str) -> None:
        super().__init__()
        self.what = what

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, DashboardUpdated) and message.what == self.what



# -- a foreign source's dashboard -------------------------------------------------------------------------


class ForeignDashboardRead(Message):
    """What opening a foreign migration's dashboard reads once: its plan and the worker's lag log."""

    def __init__(self, plan: ForeignPlan, lag: list[float]) -> None:
        super().__init__()
        self.plan = plan
        self.lag = lag


class ForeignPolled(Message):
    def __init__(self, status: ForeignStatus | None, error: PgtideError | None) -> None:
        super().__init__()
        self.status = status
        self.error = error


class ForeignTableVerified(Message):
    def __init__(self, migration_id: str, verdict: TableVerdict) -> None:
        super().__init__()
        self.migration_id = migration_id
        self.verdict = verdict


class ForeignVerifyFinished(Message):
    def __init__(self, migration_id: str, report: ForeignVerifyReport | None, error: PgtideError | None) -> None:
        super().__init__()
        self.migration_id = migration_id
        self.report = report
        self.error = error


class ForeignDashboardUpdated(Message):
    """The app changed a foreign dashboard's model (verify progress): redraw it."""

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, ForeignDashboardUpdated)
