"""The JSON API drain's rate limit: a burst, then one request per 1/rate seconds, however many wait."""

from __future__ import annotations

import pytest

from wheelmill.upstream.pacing import Pacer


class Clock:
    def __init__(self) -> None:
        self.now = 100.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(round(seconds, 6))
        self.now += seconds


def test_a_burst_then_one_request_per_interval() -> None:
    clock = Clock()
    pacer = Pacer(4.0, burst=2, clock=clock, sleep=clock.sleep)
    for _ in range(5):
        pacer.wait()
    assert clock.slept == [0.25, 0.25, 0.25]  # two at once, then 4 a second

    clock.now += 10  # idle time earns a burst again, never more
    for _ in range(3):
        pacer.wait()
    assert clock.slept == [0.25, 0.25, 0.25, 0.25]


def test_no_rate_means_no_waiting_and_a_bad_rate_is_refused() -> None:
    clock = Clock()
    pacer = Pacer(None, clock=clock, sleep=clock.sleep)
    for _ in range(100):
        pacer.wait()
    assert clock.slept == []
    with pytest.raises(ValueError, match="must be positive"):
        Pacer(0)
