"""Progress of long loops, logged with rate and ETA."""

from __future__ import annotations

import logging
import time


class Progress:
    def __init__(self, total: int, label: str, logger: logging.Logger | None = None, every_seconds: float = 10.0):
        self.total, self.label, self.every = max(int(total), 0), label, every_seconds
        self.logger = logger or logging.getLogger(__name__)
        self.done = 0
        self.started = self.last = time.perf_counter()

    def update(self, n: int = 1) -> None:
        self.done += n
        now = time.perf_counter()
        if now - self.last >= self.every or self.done >= self.total:
            self.last = now
            rate = self.done / max(now - self.started, 1e-9)
            eta = (self.total - self.done) / rate if rate > 0 else 0.0
            pct = 100.0 * self.done / self.total if self.total else 100.0
            self.logger.info("%s: %d/%d (%.0f%%) %.2f/s ETA %02d:%02d", self.label, self.done, self.total, pct,
                             rate, eta // 60, eta % 60)
