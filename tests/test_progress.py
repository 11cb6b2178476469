"""The progress logger: counts, percentages, rate, ETA, and how often it speaks."""

from __future__ import annotations

import logging

import pytest

from weightspace import progress as progress_module
from weightspace.progress import Progress, format_duration


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


@pytest.fixture
def clock(monkeypatch):
    fake = Clock()
    monkeypatch.setattr(progress_module.time, "perf_counter", fake)
    return fake


def messages(caplog):
    return [r.getMessage() for r in caplog.records if r.name == "test.progress"]


def test_line_has_count_percent_rate_and_eta(clock, caplog):
    caplog.set_level(logging.INFO, logger="test.progress")
    p = Progress(200, "encode", logger=logging.getLogger("test.progress"), every_seconds=0)
    clock.now += 10.0
    p.update(50)  # 5/s, 150 left -> 30 s
    assert messages(caplog) == ["encode: 50/200 (25%) 5.00/s ETA 00:30"]
    clock.now += 10.0
    p.update(10)  # 60 in 20 s = 3/s, 140 left -> 46.7 s
    assert messages(caplog)[-1] == "encode: 60/200 (30%) 3.00/s ETA 00:47"


def test_logs_at_most_every_interval_and_once_at_the_end(clock, caplog):
    caplog.set_level(logging.INFO, logger="test.progress")
    p = Progress(10, "train", logger=logging.getLogger("test.progress"), every_seconds=5)
    for _ in range(9):
        clock.now += 1.0
        p.update()
    # updates at t=1..9: a line at t=5 (5 s since start), the next is due at t=10
    assert [m.split(" ")[1] for m in messages(caplog)] == ["5/10"]
    clock.now += 0.1
    p.update()  # the last unit: always logged, with ETA 0
    assert messages(caplog)[-1].startswith("train: 10/10 (100%)")
    assert messages(caplog)[-1].endswith("ETA 00:00")
    clock.now += 100
    p.update()  # past the end: no more lines
    assert len(messages(caplog)) == 2


def test_resumed_work_counts_in_the_total_not_the_rate(clock, caplog):
    caplog.set_level(logging.INFO, logger="test.progress")
    p = Progress(
        100, "train", logger=logging.getLogger("test.progress"), every_seconds=0, initial=40
    )
    clock.now += 20.0
    p.update(10)  # 10 units in 20 s this run: 0.5/s; 50 left -> 100 s
    assert messages(caplog) == ["train: 50/100 (50%) 0.50/s ETA 01:40"]


def test_unknown_rate_and_empty_total(clock, caplog):
    caplog.set_level(logging.INFO, logger="test.progress")
    logger = logging.getLogger("test.progress")
    p = Progress(10, "x", logger=logger, every_seconds=0)
    p.update(0)  # no time has passed: the rate is unknown
    assert messages(caplog)[-1] == "x: 0/10 (0%) 0.00/s ETA --:--"
    Progress(0, "empty", logger=logger).update(0)
    assert messages(caplog)[-1].startswith("empty: 0/0 (100%)")


def test_format_duration():
    assert format_duration(0) == "00:00"
    assert format_duration(59.6) == "01:00"
    assert format_duration(3725) == "62:05"  # minutes are not wrapped into hours
    assert format_duration(-3) == "00:00"
