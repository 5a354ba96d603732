"""Which worker result is still wanted: every request gets a ticket, only the newest per purpose counts.

A thread worker cannot be stopped: cancelling it (``exclusive=True``, leaving a screen) only
marks it, and it still posts whatever it finds. So each request carries a :class:`Ticket` into
its worker and back out on every message, and the UI thread drops a result whose ticket is no
longer the latest for its purpose: an old check never lands in a freshly cleared list, an old
answer never overwrites a newer one because it happened to be slower.

Only the UI thread starts tickets and asks whether one is current; workers just carry them.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass


@dataclass(frozen=True)
class Ticket:
    """One request: what it is for (``purpose``) and which one it is (``id``, unique per tracker)."""

    purpose: str
    id: int


class RequestTracker:
    """The latest ticket per purpose."""

    def __init__(self) -> None:
        self._ids = itertools.count(1)
        self._latest: dict[str, int] = {}

    def start(self, purpose: str) -> Ticket:
        """A new ticket for ``purpose``: from now on every older one of that purpose is superseded."""
        ticket = Ticket(purpose, next(self._ids))
        self._latest[purpose] = ticket.id
        return ticket

    def supersede(self, purpose: str) -> None:
        """Drop whatever is still running for ``purpose`` without asking anything new."""
        self.start(purpose)

    def is_current(self, ticket: Ticket) -> bool:
        return self._latest.get(ticket.purpose) == ticket.id
