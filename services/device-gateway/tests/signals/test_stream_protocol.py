"""The EMG protocol of a stream binding, checked against the muscle list and the Device's channels."""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

import pytest

from relearn.device_gateway.streams.domain import ChannelPair, check_emg_protocol, muscle_codes
from relearn.shared.fhir import UnprocessableEntity

CHANNELS = ("VM", "VL", "BF")


def _check(
    muscles: dict[str, str] | None = None,
    pairs: list[tuple[str, str]] | None = None,
    reference: str | None = None,
    channels: tuple[str, ...] = CHANNELS,
) -> None:
    check_emg_protocol(
        muscles=muscles,
        pairs=[ChannelPair(agonist=a, antagonist=b) for a, b in pairs or []],
        onset_reference=reference,
        channels=channels,
        device="emg-1",
    )


def _refusal(**kw: Any) -> str:
    with pytest.raises(UnprocessableEntity) as caught:
        _check(**kw)
    assert caught.value.status_code == 422
    (issue,) = caught.value.issues
    (where,) = issue.expression
    return where


def test_the_published_muscles_are_the_contract_slugs() -> None:
    codes = muscle_codes()
    for slug in ("vastus-medialis", "vastus-lateralis", "biceps-femoris", "tibialis-anterior", "soleus"):
        assert slug in codes
    assert all(c == c.lower() and " " not in c and not c.endswith(("-left", "-right")) for c in codes)
    shipped = resources.files("relearn.device_gateway") / "codesystem" / "relearn-muscle-codesystem.json"
    cs = json.loads(shipped.read_text(encoding="utf-8"))
    assert cs["count"] == len(cs["concept"]) == len(codes)


def test_a_valid_protocol_passes() -> None:
    _check({"VM": "vastus-medialis", "VL": "vastus-lateralis"}, [("VM", "BF")], "VL")
    _check()  # nothing declared, nothing to check
    _check({"ch9": "soleus"}, [("a", "b")], "z", channels=())  # a Device that declares no channels


def test_each_refusal_names_the_field() -> None:
    assert _refusal(muscles={"VM": "VMO"}) == "protocol.muscles.VM"
    assert _refusal(muscles={"VM": "vastus-medialis-left"}) == "protocol.muscles.VM"
    assert _refusal(muscles={"SOL": "soleus"}) == "protocol.muscles.SOL"
    assert _refusal(reference="SOL") == "protocol.onsetReference"
    assert _refusal(pairs=[("VM", "SOL")]) == "protocol.pairs[0].antagonist"
    assert _refusal(pairs=[("SOL", "VM")]) == "protocol.pairs[0].agonist"
    assert _refusal(pairs=[("VM", "VM")]) == "protocol.pairs[0]"
    assert _refusal(pairs=[("VM", "BF"), ("BF", "VM")]) == "protocol.pairs[1]"
