"""A request rate limit shared by threads: at most ``rate`` starts per second, after a burst of ``burst``.

The JSON API drain runs for hours when a farm first follows the whole index; pacing it keeps the
farm a polite client however many workers fetch at once.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class Pacer:
    """A token bucket: ``wait()`` returns once a request may start."""

    def __init__(
        self,
        rate: float | None,
        burst: int = 1,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if rate is not None and rate <= 0:
            raise ValueError(f"a request rate must be positive or None (unlimited), not {rate!r}")
        self.rate = rate
        self.burst = max(1, burst)
        self._clock, self._sleep = clock, sleep
        self._lock = threading.Lock()
        self._tokens = float(self.burst)
        self._stamp = clock()

    def wait(self) -> None:
        if self.rate is None:
            return
        with self._lock:  # callers queue here, so each waits its own turn
            now = self._clock()
            self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
            self._stamp = now
            if self._tokens < 1:
                delay = (1 - self._tokens) / self.rate
                self._sleep(delay)
                self._stamp += delay
                self._tokens = 1.0
            self._tokens -= 1
