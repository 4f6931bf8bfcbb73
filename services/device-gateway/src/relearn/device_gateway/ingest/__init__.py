"""Ingest (``POST /ingest/frames``, ``WS /ingest/ws``): frames in, raw events out, nothing lost or doubled.

A device (or the clinic hub that carries it) sends frames with device credentials (a token with a ``device``
claim, see :mod:`relearn.device_gateway.authz.service`). A request is all-or-nothing:

1. Back-pressure first: when more than ``ingest_max_backlog`` outbox events wait for the broker, the answer
   is 429 with ``Retry-After`` and nothing is stored (the device keeps its frames and sends them again).
2. Every frame is validated (schema, the stream binding exists, is open, belongs to the frame's device, has
   its stream type and the channel layout fixed by its first frame); any problem is one 422
   OperationOutcome naming each field (``frames[2].samples``) and nothing is stored. A closed stream is 409;
   a frame whose raw event would exceed ``ingest_max_event_bytes`` is 413 (split it).
3. In ONE transaction: the stream rows are locked (``SELECT ... FOR UPDATE``, which serialises the sequence
   bookkeeping of a stream across requests), repeats of a stored (stream, sequence) are reported
   ``duplicate`` and not published again, accepted frames get their row (the recording, compact binary) and
   their raw event in the outbox, and jumps in sequence are recorded as gaps and reported.
4. After the commit, every ``after_commit`` hook runs for each accepted frame (live biofeedback plugs in
   here: ``ingestor.after_commit.append(hub.publish)``).

``WS /ingest/ws`` (token in the ``Authorization`` header or the ``access_token`` query parameter; refusals
close with 4000 + the HTTP status): each text message is one SensorFrame or ``{"frames": [...]}``, answered
with one ack per frame, ``{"streamId", "sequence", "status": "accepted"|"duplicate", "gap"?}``, or
``{"status": "error", "code", "issue": OperationOutcome}`` (nothing of that message stored), or under
back-pressure ``{"status": "retry", "retryAfterMs"}`` for frames that were not stored. The token is checked
again at each message: one arriving after its expiry is not handled and the socket closes with 4401 ``token
expired``. Before that, ``{"type": "token", "accessToken"}`` swaps in a fresh token of the same subject and
device (answered ``{"type": "token", "status": "accepted", "expiresAt"}`` or ``"status": "error"``).

Per-request work is vectorised: samples are parsed by pydantic's core, checked and stored as numpy blocks.

Where each part lives: :mod:`.schemas` (request/response models, parsing, OpenAPI schemas), :mod:`.service`
(the :class:`Ingestor`: checks, the one transaction, after-commit hooks; the outbox backlog gauge, 429),
:mod:`.repository` (the outbox backlog COUNT), :mod:`.api` (the HTTP and WebSocket routes; one WebSocket
message -> its acks).
"""

from relearn.device_gateway.ingest.api import ingest_router
from relearn.device_gateway.ingest.schemas import (
    INGEST_BODY_SCHEMA,
    FrameResult,
    GapReport,
    IngestRequest,
    IngestResponse,
    TooLarge,
    openapi_schemas,
)
from relearn.device_gateway.ingest.service import (
    AfterClose,
    AfterCommit,
    BacklogGauge,
    Ingestor,
    IngestResult,
    TooBusy,
)

__all__ = [
    "INGEST_BODY_SCHEMA",
    "AfterClose",
    "AfterCommit",
    "BacklogGauge",
    "FrameResult",
    "GapReport",
    "IngestRequest",
    "IngestResponse",
    "IngestResult",
    "Ingestor",
    "TooBusy",
    "TooLarge",
    "ingest_router",
    "openapi_schemas",
]
