"""The sign-in throttle: a window of failures per key, bounded memory."""

from __future__ import annotations

from relearn.authorization.domain.throttle import LoginThrottle


def test_the_sixth_try_waits_until_the_oldest_failure_leaves_the_window() -> None:
    t = LoginThrottle(max_failures=5, window_s=900)
    for i in range(5):
        assert t.retry_after(["u"], 100.0 + i) is None
        t.failed(["u"], 100.0 + i)
    assert t.retry_after(["u"], 110.0) == 900 - 10
    assert t.retry_after(["other"], 110.0) is None
    assert t.retry_after(["u"], 1000.0) is None  # the first failure left the window at 1000


def test_a_success_clears_the_user_and_memory_is_bounded() -> None:
    t = LoginThrottle(max_failures=2, window_s=60, max_keys=3)
    t.failed(["u"], 0.0)
    t.failed(["u"], 1.0)
    assert t.retry_after(["u"], 2.0) is not None
    t.succeeded(["u"])
    assert t.retry_after(["u"], 2.0) is None
    bounded = LoginThrottle(max_failures=1, window_s=60, max_keys=3)
    for key in "abcd":
        bounded.failed([key], 3.0)
    assert bounded.retry_after(["d"], 4.0) is not None  # kept
    assert bounded.retry_after(["a"], 4.0) is None  # the oldest key was forgotten
