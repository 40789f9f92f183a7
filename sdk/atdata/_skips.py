"""What `on_error="skip"` dropped: counted, logged without flooding, summarised per pass.

A dataset whose every sample is broken would otherwise log one line per sample (thousands)
and end silently. The first few skips are logged one by one, later ones at most once per
`interval` seconds as a count, and each pass over the data ends with one line: how many
samples were skipped of how many, and the first reasons.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Generator, Iterable
from dataclasses import KW_ONLY, dataclass, field
from typing import Any

__all__ = ["SkipLog"]


@dataclass
class _Pass:
    """Tallies of one pass over the data (one iterator)."""

    seen: int = 0
    samples: int = 0
    shards: int = 0
    reasons: list[str] = field(default_factory=list)


@dataclass(eq=False)
class SkipLog:
    """Rate-limited skip logging and an end-of-pass summary for one dataset.

    `add(reason)` for each skipped sample (`whole_shard=True` when the rest of a shard was
    dropped); `watch(samples)` wraps a pass's sample iterator, counting what it yields and
    logging the summary when the pass ends (exhausted or closed early) if anything was skipped.
    """

    logger: logging.Logger
    _: KW_ONLY
    burst: int = 5
    interval: float = 10.0
    first_reasons: int = 3
    count: int = field(default=0, init=False)
    _unlogged: int = field(default=0, init=False, repr=False)
    _last_line: float = field(default=0.0, init=False, repr=False)
    _passes: list[_Pass] = field(default_factory=list, init=False, repr=False)

    def add(self, reason: str, *, whole_shard: bool = False) -> None:
        self.count += 1
        for p in self._passes:
            if whole_shard:
                p.shards += 1
            else:
                p.samples += 1
            if len(p.reasons) < self.first_reasons:
                p.reasons.append(reason)
        now = time.monotonic()
        if self.count <= self.burst:
            self.logger.warning("skipping: %s", reason)
            self._last_line = now
            return
        self._unlogged += 1
        if self.count == self.burst + 1 or now - self._last_line >= self.interval:
            self.logger.warning(
                "skipping: %d more (%d in all so far; further ones are logged at most every "
                "%.0f s), latest: %s",
                self._unlogged,
                self.count,
                self.interval,
                reason,
            )
            self._unlogged = 0
            self._last_line = now

    def watch(self, samples: Iterable[Any]) -> Generator[Any, None, None]:
        """`samples`, counted; the pass's summary is logged when it ends."""
        tally = _Pass()
        self._passes.append(tally)
        try:
            for sample in samples:
                tally.seen += 1
                yield sample
        finally:
            self._passes.remove(tally)
            if tally.samples or tally.shards:
                self.logger.warning("%s", self.summary(tally))

    @staticmethod
    def summary(tally: _Pass) -> str:
        text = f"on_error='skip': skipped {tally.samples} of {tally.seen + tally.samples} samples"
        if tally.shards:
            text += f" and the rest of {tally.shards} shard(s)"
        return text + "; first reasons: " + " | ".join(tally.reasons)

    def __getstate__(self) -> dict[str, Any]:
        # A copy (e.g. in a DataLoader worker) starts without the parent's open passes.
        state = dict(self.__dict__)
        state["_passes"] = []
        return state
