"""The `?` / F1 help of each screen: what it is for, what its fields and marks mean, its keys.

Each screen's own words live in ``HELP`` below (keyed by screen class name); the keys are
read from the screen's bindings at the moment help opens, so they never drift from what the
keys do.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from rich.text import Text
from textual.binding import Binding

if TYPE_CHECKING:
    from .base import PgtideScreen

APP_KEYS = (
    ("? / F1", "this help (in a text field: F1)"),
    ("Tab / Shift+Tab", "next / previous field or button"),
    ("Ctrl+P", "command palette: every action of this screen, the log file's location"),
    ("Ctrl+Q", "quit (asks first when something would stop)"),
)

HELP: dict[str, str] = {
    "StartScreen": """\
Saved profiles: a migration plan kept for later (source, target, selection, options; never a password).

Profile    the profile's name (a TOML file in your config directory)
Source     where it migrates from, password hidden
Target     where it migrates to
Modified   when the file was last written

Load, Duplicate, Delete and Dashboard act on the highlighted profile; they are unavailable while
there is none. Delete asks first. "Dashboard" opens the live view of a migration already started
with that profile.

Recorded migrations (shown once there is one): every migration pgtide recorded on this machine,
from the app or the CLI, with each database's state and its worker (running, finished, or dead
when it was killed). o opens the highlighted one's dashboard.""",
    "ConnectScreen": """\
Step 1 of 4: the two servers. Fill the fields, or paste a URL (postgresql://user@host:5432/db)
into the URL box: it fills the fields; a password in it moves into the masked Password field.

Test connection  connects and shows the server's version, wal_level and the role's privileges.
✔  tested and reachable (the mark goes away as soon as you edit a field of that side)
✖  the test failed: what happened and how to fix it is shown under the form
▲  reachable, but something this side needs is missing (wal_level, REPLICATION, CREATEDB)

Next tests whatever is untested and moves on only when both servers answer; when one does not,
it says which and why. "Remember password" keeps it in the OS keyring (offered only when one is
available); otherwise ~/.pgpass is the place.

A foreign source: paste sqlite:///path/file.db (or the file's path), mysql://user@host/db,
mariadb://… or mongodb://… into the source's URL box. Test connection lists its tables and says
whether its changes can stream (binlog ROW, change streams) or what to change. Typing into the
host, port, database or user field makes the source PostgreSQL again.""",
    "PickScreen": """\
Step 2 of 4: what to migrate. Left: the source's databases; right: the tables of the highlighted one.

[x] / [ ]  selected / not selected (databases and tables alike)
⚠          the table has no primary key or replica identity: once published, UPDATE and DELETE on
           it fail on the source. Make it schema-only in the next step, or give it a key.

In the database list: Space selects or clears the highlighted database; moving highlights it.
In the table list: type in the filter box to narrow (10,000 tables stay quick), then Space or
Enter toggles a table, a selects every match, n clears every match, s selects (or clears) every
table of the highlighted table's schema. The line under the list counts matches and selected tables.""",
    "FiltersScreen": """\
Step 3 of 4: per table, what is copied. Left: every table of the selected databases.

Mode        (•) copy rows · schema only (the definition, no rows) · exclude (left out)
Row filter  a SQL condition over the table's columns (region = 'eu'); Enter or Check sends it to
            the source server, which parses it; only matching rows are copied and replicated.
Time filter only rows of the last N days (weeks, months…) by a timestamp column; the cut is fixed
            once. Only columns of the table's key / replica identity are offered: the publication
            can filter on those only.
✔  the server accepted the filter (with the rows it keeps)   ✖  refused: the reason and the fix
⚠  (in the list) the table has no primary key or replica identity

A table takes one filter, and only when its rows are copied: for schema-only and excluded tables
the filter fields are off. Next is refused while a filter is refused or still being checked, and
says which table.""",
    "ReviewScreen": """\
Step 4 of 4: every check validate runs, the estimate and the plan in words. Nothing has changed
on either server yet.

✔ passed  ▲ warning (read it; it does not block)  ✖ failed (blocks Start; says how to fix it)

[x] Drop and recreate non-empty target databases: without it, a target database that holds
tables refuses the migration. With it, Start asks you to type the name of each database that
will be dropped: its tables and rows are lost.

g (or Start migration) starts once every check passes; otherwise it says what blocks it.
s saves the plan as a profile (no password in it); r checks again. f applies the fixes pgtide
can make for failed checks (REPLICA IDENTITY, CREATE EXTENSION, ALTER SYSTEM — a restart stays
yours): it lists each statement and its server first, then checks again.""",
    "RunScreen": """\
The migration: the phases (○ waiting, ● running with its time, ✔ done, ✖ failed), the copy's
progress with throughput, elapsed time and ETA, every table (schema-only ones listed with no rows),
and the log (also written to pgtide's log file: Ctrl+P shows where).

Once the copy is done the state reads "streaming": every change on the source now flows to the
target; the Dashboard shows lag and runs verify. Cancel is possible only while copying: it stops
the copy and removes what this run created. Leaving this screen does not stop anything.""",
    "DashboardScreen": """\
The live migration: one panel per database with its state, lag (bytes and seconds; the graph's
scale is its peak, shown above it), WAL the source keeps for it, tables ready, errors.

Tables: mode (full, filtered, schema-only), subscription state (init, data copy, sync, ready),
rows, and the last verify's verdict (✔ match, ✖ N differ). v verifies every table row by row on
both sides (read-only); the time of the last verify is shown above the table. t tears the
replication down (subscription, slot, publication; the copied data stays): it asks first.
Quitting the app does not stop replication: it runs in the servers. c opens the Cutover screen
once every database is streaming.

When the source's schema drifts (a column the target lacks, a new table), the panel says which
table and what differs; a lists the additive statements and applies them on the target after you
confirm. When a change failed to apply, the subscription stops (PostgreSQL 15+) and the panel
shows the server's error and table: e enables it again once the cause is fixed; k skips the
failing transaction after a warning (its rows are lost on the target: verify names them).""",
    "ForeignPickScreen": """\
Step 2 of 4 for a foreign source (SQLite, MySQL/MariaDB, MongoDB): the tables (or collections) of
its one database, as Connect read them. Nothing is read again here.

Rows    the source's count: exact, or "est." for its estimate (MySQL's statistics, MongoDB's count)
Size    what the source reports for the table's data
⚠       no key: no primary key or unique NOT NULL key; the table is copied, but a change stream
cannot apply its updates and deletes by key, and a refresh reloads it whole

Space (or a click) ticks or unticks the highlighted table; the filter box narrows the list.""",
    "ForeignFiltersScreen": """\
Step 3 of 4 for a foreign source: per picked table, how much of it moves, and the layout.

Schema only   the table is created on the target, no rows are copied
Row filter    only rows matching it are copied, written in the source's own language: an SQL
expression for SQLite and MySQL/MariaDB (created_at >= '2024-01-01'), a JSON query document for
MongoDB ({"status": "active"})
Check         asks the source whether it accepts the filter (it reads no rows); its message is shown
✓ accepted  ✗ refused (the source's words, and what to do)  ? not checked yet
Layout        typed: real columns with pgloader-like casts, keys and indexes rebuilt after the data;
jsonb: one (id, data JSONB, _source_type, _migrated_at) table per source table. MongoDB: jsonb only.
Target database  the PostgreSQL database the tables land in (created when missing)

Next checks every filter not yet checked and stops, with the source's message, on a refused one.""",
    "ForeignReviewScreen": """\
Step 4 of 4 for a foreign source: validate's checks, the estimate and the plan in words.

✔ ok   ▲ warning (read it; it does not stop the copy)   ✖ error (Start waits until it is fixed)
consistency     what snapshot the source gives the copy (a consistent snapshot, a read transaction…)
change capture  whether changes can stream afterwards (binlog, change streams) or need a refresh
Estimate        rows and sizes from the source's catalog; filtered tables are counted whole

Replace target tables: tables of the same names already on the target (not from this migration)
are dropped and created again; Start asks before it.""",
    "ForeignRunScreen": """\
The copy from a foreign source: per table its progress, rows and bytes, and the log.

Cancel copy stops after the batch in flight; copied tables are kept and a rerun resumes table by
table. Once copied, Open dashboard verifies, starts the sync (binlog, change stream or refresh)
and stops it. The migration is also listed on the Start screen.""",
    "ForeignDashboardScreen": """\
A migration from SQLite, MySQL/MariaDB or MongoDB: what `pgtide status --migration ID` shows, read
every 2 seconds.

Source / Target  where it copies from and to (passwords never shown)
State      copying, copied (the copy is done), streaming (a sync ran or runs), failed, torn down
Sync       stream: the source's change log (MySQL/MariaDB binlog, MongoDB change streams) is applied
           as it commits · refresh: the tables are re-read every interval and the differences
           applied by id · copy only: nothing keeps the target in step yet
Worker     the background process that keeps the target in sync; it outlives this app
Lag        how far the target is behind the source's last applied change (stream), with its
           recent history; for a refresh, the last refresh's counts and how long ago it ran
Position   the change-log position the target recorded: a new sync continues from there

Tables: each table's copy state (✔ copied, ● copying) and rows copied, and the last verify's
verdict. v verifies (reads only): row counts and a hash of every row by id on both sides; a
differing table lists the first missing, extra and different ids below the table. s starts the
sync in the migration's worker (refused, with the reason, when the source cannot stream and no
refresh interval was set at init). x stops the worker: it asks first; the target keeps its rows.""",
    "CutoverScreen": """Finish the migration: the application's writes move from the source to the target.

Fence      how writes are stopped on the source: roles (the connected roles become read-only on
           the migrated databases and their sessions are ended — a fence against applications,
           not a security boundary), pgbouncer (PgBouncer pauses the clients, then resumes them
           on the target; needs its admin console and the %include-d [databases] file), or none
           (you stopped the application yourself)
Verify     the final verify while writes are fenced: the tables written since the last verify,
           every table, or none
Reverse    keep a subscription on the source so the target's changes flow back (rollback window)

p runs the preflight: it only reads, and lists each check with its fix (✓ ok, ! warning,
✗ stops the cutover). Cut over needs a clean preflight and the database name typed exactly.
During the run each step shows its time; Abort (until the switch) lifts the fence and leaves
replication streaming. The result shows the write downtime pgtide measured and what to do next.""",
}


def binding_lines(screen: PgtideScreen) -> list[tuple[str, str]]:
    lines = []
    seen = set()
    # The focused widget and its containers first (the table picker's keys), then the screen's;
    # Textual's own widgets' bindings (cursor keys) are left out: they are the usual ones.
    nodes = list(screen.focused.ancestors_with_self) if screen.focused is not None else [screen]
    for node in nodes:
        if node is screen.app or not type(node).__module__.startswith("pgtide."):
            continue
        # Only the bindings the class declares itself: a pgtide table inherits DataTable's cursor keys.
        for binding in vars(type(node)).get("BINDINGS", ()):
            if not isinstance(binding, Binding) or not binding.description or binding.description in seen:
                continue
            if node.check_action(binding.action.split("(")[0], ()) is False:
                continue
            seen.add(binding.description)
            keys = " / ".join(screen.app.get_key_display(Binding(key.strip(), binding.action))
                              for key in binding.key.split(","))
            lines.append((keys, binding.description))
    return lines


def unwrap(text: str) -> str:
    """The help as written (wrapped for the source) as paragraphs the dialog wraps to its width.

    A line that starts in lower case, or indented, continues the one before; anything else
    (a field name, a mark, a blank line) starts a new one.
    """
    return re.sub(r"\n(?: +|(?=[a-z(]))", " ", text)


def help_text(screen: PgtideScreen) -> Text:
    text = Text(unwrap(HELP.get(type(screen).__name__, "").rstrip()) + "\n")
    text.append("\nKeys on this screen\n", style="bold")
    for keys, description in [*binding_lines(screen), *APP_KEYS]:
        text.append(f"  {keys:<18}", style="bold")
        text.append(f"{description}\n")
    text.append("\nEsc, Enter, q or ? closes this help.", style="dim")
    return text
