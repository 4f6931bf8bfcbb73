"""Sign-in throttling: after too many failed passwords for one user name (5) within a window, the login page
refuses further tries for that name until the window has passed (429 with Retry-After).

Pure and in memory: each API process keeps its own count, so with N processes a guesser gets at most N times
the allowance per window (docs/security.md, "App Launch").
"""

from __future__ import annotations

from collections import OrderedDict, deque

MAX_FAILURES = 5
WINDOW_S = 15 * 60
MAX_KEYS = 10_000


class LoginThrottle:
    def __init__(
        self, max_failures: int = MAX_FAILURES, window_s: float = WINDOW_S, max_keys: int = MAX_KEYS
    ):
        self.max_failures = max_failures
        self.window_s = window_s
        self.max_keys = max_keys
        # key -> times of its recent failures, oldest key first (bounded: the oldest are forgotten).
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()

    def _recent(self, key: str, now: float) -> deque[float]:
        times = self._failures.get(key)
        if times is None:
            return deque()
        while times and times[0] <= now - self.window_s:
            times.popleft()
        if not times:
            del self._failures[key]
        return times

    def retry_after(self, keys: list[str], now: float) -> float | None:
        """Seconds until a try is allowed again, or None when every key may try now."""
        waits = []
        for key in keys:
            times = self._recent(key, now)
            if len(times) >= self.max_failures:
                waits.append(times[0] + self.window_s - now)
        return max(waits) if waits else None

    def failed(self, keys: list[str], now: float) -> None:
        for key in keys:
            times = self._failures.setdefault(key, deque(maxlen=self.max_failures))
            times.append(now)
            self._failures.move_to_end(key)
        while len(self._failures) > self.max_keys:
            self._failures.popitem(last=False)

    def succeeded(self, keys: list[str]) -> None:
        for key in keys:
            self._failures.pop(key, None)
