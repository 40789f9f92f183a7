"""How often entries were viewed and shown in searches, for ``getEntryStats``.

Kept in memory by each serving process, per day (UTC), for the last month: figures since the
process started, not persisted (a restart or another ``--workers`` process starts from zero).
An entry's counts are dropped with its oldest day; at most ``max_entries`` entries are kept.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterable

#: Days each period of getEntryStats covers.
PERIOD_DAYS = {"day": 1, "week": 7, "month": 30}
KEEP_DAYS = 31


def _today() -> int:
    return int(time.time() // 86_400)


class EntryStats:
    """Views (getEntry/getEntries answers) and search appearances of each entry, by day."""

    def __init__(self, max_entries: int = 100_000) -> None:
        self.max_entries = max_entries
        # uri -> day -> [views, search appearances]
        self._days: dict[str, dict[int, list[int]]] = defaultdict(dict)

    def _bump(self, uris: Iterable[str], slot: int) -> None:
        today = _today()
        for uri in uris:
            if uri not in self._days and len(self._days) >= self.max_entries:
                self._forget_old(today)
                if len(self._days) >= self.max_entries:
                    continue
            counts = self._days[uri].setdefault(today, [0, 0])
            counts[slot] += 1

    def viewed(self, uris: Iterable[str]) -> None:
        self._bump(uris, 0)

    def shown_in_search(self, uris: Iterable[str]) -> None:
        self._bump(uris, 1)

    def _forget_old(self, today: int) -> None:
        for uri in list(self._days):
            days = self._days[uri]
            for day in [d for d in days if d <= today - KEEP_DAYS]:
                del days[day]
            if not days:
                del self._days[uri]

    def counts(self, uri: str, period: str) -> tuple[int, int]:
        """(views, search appearances) of ``uri`` over the last ``period`` (day, week, month)."""
        since = _today() - PERIOD_DAYS.get(period, 7) + 1
        days = self._days.get(uri, {})
        views = sum(c[0] for d, c in days.items() if d >= since)
        shown = sum(c[1] for d, c in days.items() if d >= since)
        return views, shown
