"""Progress of long loops (training steps, encoder batches), logged with rate and ETA."""

from __future__ import annotations

import logging
import time


def format_duration(seconds: float) -> str:
    """mm:ss (minutes may exceed 59, so the field sorts and reads the same in every log)."""
    seconds = max(0, int(round(seconds)))
    return f"{seconds // 60:02d}:{seconds % 60:02d}"


class Progress:
    """Counts work done and logs ``label: k/total (x%) rate/s ETA mm:ss``.

    A line is logged at most every ``every_seconds`` (0 logs every update) and always
    once when the count reaches ``total``. ``initial`` is work already done before this
    run (a resumed job): it counts towards k but not towards the rate, so the ETA of a
    resumed run is not flattered by steps it did not do.
    """

    def __init__(
        self,
        total: int,
        label: str,
        logger: logging.Logger | None = None,
        every_seconds: float = 10.0,
        initial: int = 0,
    ):
        self.total = max(int(total), 0)
        self.label = label
        self.every = float(every_seconds)
        self.logger = logger or logging.getLogger(__name__)
        self.initial = self.done = int(initial)
        self.started = self.last = time.perf_counter()
        self._finished_logged = False

    @property
    def rate(self) -> float:
        """Units per second since this object was made (resumed work excluded)."""
        elapsed = time.perf_counter() - self.started
        return (self.done - self.initial) / elapsed if elapsed > 0 else 0.0

    def eta_seconds(self) -> float | None:
        rate = self.rate
        remaining = max(self.total - self.done, 0)
        if remaining == 0:
            return 0.0
        return remaining / rate if rate > 0 else None

    def update(self, n: int = 1) -> None:
        self.done += int(n)
        now = time.perf_counter()
        finished = self.done >= self.total
        if finished and self._finished_logged:
            return
        if finished or now - self.last >= self.every:
            self.last = now
            self._finished_logged = finished
            self.logger.info(self.message())

    def message(self) -> str:
        pct = 100.0 * self.done / self.total if self.total else 100.0
        eta = self.eta_seconds()
        return (
            f"{self.label}: {self.done}/{self.total} ({pct:.0f}%) {self.rate:.2f}/s "
            f"ETA {format_duration(eta) if eta is not None else '--:--'}"
        )
