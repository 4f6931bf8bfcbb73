"""The short subset of the reliability suite (issue 15), run by ``make test``: faults a client causes itself,
on the platform as ``make run`` starts it (``running_platform``, PostgreSQL). Each case must end with every
acknowledged frame and write stored exactly once, every frame event handled once, and every failure the
client saw retryable (429/503 with Retry-After, or no answer at all). ``make reliability`` runs every case
(broker, relay, consumer, network, database and memory faults) and prints the table."""

from __future__ import annotations

import pytest

from relearn.devtools.platform import Platform
from relearn.devtools.reliability.cases import r6_client_cuts, r7_poison
from relearn.devtools.reliability.ingest_machine import r10_ingest_machine
from relearn.devtools.reliability.ledger import CaseResult, notes, table

pytestmark = [pytest.mark.reliability, pytest.mark.slow]


def _check(result: CaseResult, closing_notes: list[str]) -> None:
    closing_notes.append(table([result]).splitlines()[-1])
    assert result.passed, f"{table([result])}\n{notes([result])}"
    assert result.acknowledged > 0


def test_r6_clients_cut_mid_request_and_resending_store_everything_once(
    running_platform: Platform, closing_notes: list[str]
) -> None:
    _check(r6_client_cuts(running_platform, batches=20, writes=10), closing_notes)


def test_r7_poison_events_go_to_the_dlq_and_the_partition_keeps_moving(
    running_platform: Platform, closing_notes: list[str]
) -> None:
    result = r7_poison(running_platform, frames=200, every=100)
    _check(result, closing_notes)
    assert result.stored == result.acknowledged  # every frame handled, every poison record in the DLQ


def test_r10_ingest_state_machine_ends_exactly_once(
    running_platform: Platform, closing_notes: list[str]
) -> None:
    _check(r10_ingest_machine(running_platform, examples=4, steps=10), closing_notes)
