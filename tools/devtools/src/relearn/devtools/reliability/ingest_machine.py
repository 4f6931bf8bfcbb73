"""R10: a Hypothesis state machine over ingest - duplicates, reordering, hang-ups and reconnect-and-resend -
ending exactly-once: every acknowledged frame stored once, its event staged once and handled once, and
every answer the one a device expects (``accepted`` for a new frame, ``duplicate`` for a stored one)."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime
from typing import Any

import httpx
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test

from relearn.devtools.platform import Platform
from relearn.devtools.reliability.cases import _cut, _settle_now
from relearn.devtools.reliability.clinic import Audit, Clinic
from relearn.devtools.reliability.ledger import FAILED, OK, UNKNOWN, CaseResult, Ledger

SEQS = 40  # the frame numbers a stream's examples draw from


def r10_ingest_machine(platform: Platform, examples: int = 10, steps: int = 20) -> CaseResult:
    result = CaseResult("R10", f"Hypothesis state machine over ingest ({examples} runs x {steps} steps)")
    ledger = Ledger()
    clinic = Clinic(platform)
    audit = Audit(platform)
    streams: list[str] = []
    acked: set[tuple[str, int]] = set()
    start = datetime.now(UTC)
    url = f"{clinic.base}/ingest/frames"
    headers = {**clinic.device_headers, "Content-Type": "application/json"}
    surprises: list[str] = []

    class IngestMachine(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            self.stream = clinic.open_stream()
            streams.append(self.stream)
            self.stored: set[int] = set()  # what the gateway told us it holds
            self.maybe: set[int] = set()  # sent on a cut connection: stored or not, we cannot know
            self.http = httpx.Client(timeout=30.0)
            self.last: list[int] = []

        def teardown(self) -> None:
            self.http.close()

        def _frames(self, seqs: list[int]) -> list[dict[str, Any]]:
            return [clinic.frame(self.stream, s, 50, start) for s in seqs]

        def _send(self, seqs: list[int]) -> None:
            key = f"{self.stream} {seqs}"
            try:
                resp = self.http.post(url, json={"frames": self._frames(seqs)}, headers=headers)
            except httpx.HTTPError as exc:
                ledger.record("frames", key, UNKNOWN, detail=type(exc).__name__)
                self.maybe.update(seqs)
                return
            if resp.status_code != 200:
                ledger.record(
                    "frames",
                    key,
                    FAILED,
                    status=resp.status_code,
                    retry_after=resp.headers.get("Retry-After"),
                    detail=resp.text[:200],
                )
                return
            ledger.record("frames", key, OK, status=200)
            for r in resp.json()["results"]:
                seq = int(r["sequence"])
                expected = "duplicate" if seq in self.stored else "accepted"
                if seq in self.maybe and seq not in self.stored:
                    expected = r["status"]  # the cut request may or may not have stored it
                if r["status"] != expected:
                    surprises.append(f"frame {seq}: {r['status']}, expected {expected}")
                self.stored.add(seq)
                self.maybe.discard(seq)
                acked.add((self.stream, seq))
            self.last = seqs

        @rule(seqs=st.lists(st.integers(0, SEQS - 1), min_size=1, max_size=8, unique=True))
        def send(self, seqs: list[int]) -> None:
            """A batch in any order: new frames, repeats of stored ones, frames out of order."""
            self._send(seqs)

        @rule(data=st.data())
        def resend_stored(self, data: st.DataObject) -> None:
            """A device that lost its acks sends stored frames again."""
            if self.stored:
                chosen = data.draw(
                    st.lists(st.sampled_from(sorted(self.stored)), min_size=1, max_size=5, unique=True)
                )
                self._send(chosen)

        @rule(
            seqs=st.lists(st.integers(0, SEQS - 1), min_size=1, max_size=8, unique=True), whole=st.booleans()
        )
        def hang_up_then_resend(self, seqs: list[int], whole: bool) -> None:
            """The connection dies mid-request (or before the answer); the device reconnects and resends."""
            body = json.dumps({"frames": self._frames(seqs)}).encode()
            _cut(url, headers, body, whole=whole)
            ledger.record("frames", f"{self.stream} {seqs}", UNKNOWN, detail="hung up")
            self.maybe.update(seqs)
            self.http.close()
            self.http = httpx.Client(timeout=30.0)  # reconnect
            shuffled = list(seqs)
            random.Random(len(seqs)).shuffle(shuffled)
            self._send(shuffled)

        @invariant()
        def stored_exactly_what_was_acknowledged(self) -> None:
            held = audit.frames([self.stream])
            doubled = {k: n for k, n in held.items() if n != 1}
            assert not doubled, f"stored more than once: {doubled}"
            missing = {s for s in self.stored if (self.stream, s) not in held}
            assert not missing, f"acknowledged but not stored: {sorted(missing)}"

    try:
        run_state_machine_as_test(
            IngestMachine,
            settings=settings(
                max_examples=examples,
                stateful_step_count=steps,
                deadline=None,
                derandomize=True,
                database=None,
                suppress_health_check=list(HealthCheck),
            ),
        )
    except AssertionError as exc:
        result.error = str(exc)[:300]
    _settle_now(result, ledger, audit, clinic, acked, streams, None)
    if surprises:
        result.error = result.error or f"{len(surprises)} unexpected answers: {surprises[:3]}"
    result.notes.append(f"{len(streams)} streams; answers as expected: {not surprises}")
    audit.close()
    clinic.close()
    return result
