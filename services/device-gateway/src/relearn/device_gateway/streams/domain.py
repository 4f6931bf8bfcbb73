"""The EMG part of a stream binding's ``protocol``: which muscle each channel records, and which channel pairs
are agonist/antagonist. Parsed by :class:`relearn.device_gateway.streams.Protocol`, checked here against the
published muscle list and the Device's channels (422 naming the field).

- ``muscles``: ``{channel: muscle}``; the muscle is a code of the muscle CodeSystem
  (``https://relearn.health/fhir/CodeSystem/muscle``, SENIAM names as kebab slugs, published at
  ``/fhir/CodeSystem/muscle``); anything else is 422 ``protocol.muscles.<channel>``.
- ``pairs``: ``[{agonist, antagonist}]``, the only channel pairs co-contraction is computed for.
- ``onsetReference``: the synergist channel onset latencies are timed against.

Channel names are checked against the Device's declared channels when it declares any (as ``mvc`` is).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from functools import cache
from importlib import resources
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from relearn.device_gateway.device_profile.domain.codes import MUSCLE_SYSTEM
from relearn.shared.fhir import UnprocessableEntity

MAX_PAIRS = 32

ChannelName = Annotated[str, StringConstraints(min_length=1, max_length=64)]
MuscleSlug = Annotated[str, StringConstraints(min_length=1, max_length=64)]


class ChannelPair(BaseModel):
    """A declared agonist/antagonist pair of channels."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    agonist: ChannelName = Field(description="Channel of the agonist (the muscle that moves the joint)")
    antagonist: ChannelName = Field(description="Channel of its antagonist")


Muscles = Annotated[
    dict[ChannelName, MuscleSlug],
    Field(max_length=64, description="EMG channel -> SENIAM muscle slug (see /fhir/CodeSystem/muscle)"),
]
Pairs = Annotated[
    list[ChannelPair],
    Field(
        max_length=MAX_PAIRS,
        description="Agonist/antagonist channel pairs: co-contraction is computed for these only",
    ),
]


@cache
def muscle_codes() -> frozenset[str]:
    """The muscles a channel may be bound to: the codes of the shipped muscle CodeSystem."""
    path = resources.files("relearn.device_gateway") / "codesystem" / "relearn-muscle-codesystem.json"
    cs = json.loads(path.read_text(encoding="utf-8"))
    assert cs["url"] == MUSCLE_SYSTEM
    return frozenset(c["code"] for c in cs["concept"])


def check_emg_protocol(
    *,
    muscles: Mapping[str, str] | None,
    pairs: Sequence[ChannelPair] | None,
    onset_reference: str | None,
    channels: Iterable[str],
    device: str,
) -> None:
    """422 (naming the field) for an unknown muscle, a channel the Device does not declare (when it declares
    channels), or a pair that is not two different channels declared once."""
    declared = list(channels)
    known = set(declared)

    def not_a_channel(name: str, where: str) -> None:
        if known and name not in known:
            raise UnprocessableEntity(
                f"{where}: {name!r} is not a channel of Device/{device} ({', '.join(declared)})",
                expression=where,
            )

    accepted = muscle_codes()
    for channel, muscle in (muscles or {}).items():
        where = f"protocol.muscles.{channel}"
        if muscle not in accepted:
            raise UnprocessableEntity(
                f"{where}: {muscle!r} is not a known muscle; use a SENIAM slug from /fhir/CodeSystem/muscle "
                f"(e.g. vastus-medialis, biceps-femoris)",
                expression=where,
            )
        not_a_channel(channel, where)
    if onset_reference is not None:
        not_a_channel(onset_reference, "protocol.onsetReference")
    seen: set[tuple[str, str]] = set()
    for i, pair in enumerate(pairs or []):
        where = f"protocol.pairs[{i}]"
        not_a_channel(pair.agonist, f"{where}.agonist")
        not_a_channel(pair.antagonist, f"{where}.antagonist")
        if pair.agonist == pair.antagonist:
            raise UnprocessableEntity(
                f"{where}: a muscle is not its own antagonist ({pair.agonist!r} twice)", expression=where
            )
        key = (pair.agonist, pair.antagonist)
        if key in seen or key[::-1] in seen:
            raise UnprocessableEntity(f"{where}: the pair is declared twice", expression=where)
        seen.add(key)
