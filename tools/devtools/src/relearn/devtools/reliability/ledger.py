"""What a reliability case saw and what it found: every client operation as ok / failed / unknown, and the
case's accounting after healing (acknowledged, stored, lost, duplicated, recovery time)."""

from __future__ import annotations

import threading
import time
from collections import Counter
from dataclasses import dataclass, field

OK, FAILED, UNKNOWN = "ok", "failed", "unknown"
# The answers a client may retry: the request was not done, and Retry-After says when to try again.
RETRYABLE = frozenset({429, 503})


@dataclass(frozen=True)
class Op:
    """One attempt: ``ok`` (a success answer), ``failed`` (an error answer) or ``unknown`` (no answer:
    connection refused or cut, timeout; the client cannot know whether it was done and sends it again)."""

    kind: str  # "write", "frames", ...
    key: str  # what the client retries under (an Idempotency-Key, a stream's batch)
    outcome: str
    at: float
    status: int | None = None
    retry_after: str | None = None
    detail: str = ""

    @property
    def retryable(self) -> bool:
        """A failure the client was told to retry: 429/503 with Retry-After (an unknown is always
        retried)."""
        if self.outcome != FAILED:
            return True
        return self.status in RETRYABLE and bool(self.retry_after)


class Ledger:
    """Every operation of a case, from any thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.ops: list[Op] = []
        self.t0 = time.monotonic()

    def record(
        self,
        kind: str,
        key: str,
        outcome: str,
        *,
        status: int | None = None,
        retry_after: str | None = None,
        detail: str = "",
    ) -> Op:
        op = Op(kind, key, outcome, time.monotonic() - self.t0, status, retry_after, detail[:300])
        with self._lock:
            self.ops.append(op)
        return op

    def counts(self) -> Counter[str]:
        with self._lock:
            return Counter(op.outcome for op in self.ops)

    def not_retryable(self) -> list[Op]:
        with self._lock:
            return [op for op in self.ops if not op.retryable]


@dataclass
class CaseResult:
    case: str
    title: str
    acknowledged: int = 0
    stored: int = 0
    lost: int = 0
    duplicated: int = 0
    recovery_s: float | None = None
    ok: int = 0
    failed: int = 0
    unknown: int = 0
    not_retryable: int = 0
    notes: list[str] = field(default_factory=list)
    error: str = ""

    def add_ledger(self, ledger: Ledger) -> None:
        counts = ledger.counts()
        self.ok, self.failed, self.unknown = counts[OK], counts[FAILED], counts[UNKNOWN]
        bad = ledger.not_retryable()
        self.not_retryable = len(bad)
        for op in bad[:3]:
            self.notes.append(f"not retryable: {op.kind} {op.status} {op.detail[:120]}")

    @property
    def passed(self) -> bool:
        return not self.error and self.lost == 0 and self.duplicated == 0 and self.not_retryable == 0


def table(results: list[CaseResult]) -> str:
    """The results as a Markdown table (printed by ``make reliability`` and kept in docs/reliability.md)."""
    head = (
        "| case | what | ops ok / failed / unknown | acknowledged | stored | lost | duplicated "
        "| not retryable | recovery | result |"
    )
    lines = [head, "|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        rec = "-" if r.recovery_s is None else f"{r.recovery_s:.1f} s"
        verdict = "pass" if r.passed else ("ERROR" if r.error else "FAIL")
        lines.append(
            f"| {r.case} | {r.title} | {r.ok} / {r.failed} / {r.unknown} | {r.acknowledged} | {r.stored} "
            f"| {r.lost} | {r.duplicated} | {r.not_retryable} | {rec} | {verdict} |"
        )
    return "\n".join(lines)


def notes(results: list[CaseResult]) -> str:
    out = []
    for r in results:
        for n in ([f"error: {r.error}"] if r.error else []) + r.notes:
            out.append(f"- {r.case}: {n}")
    return "\n".join(out)
