"""Live biofeedback: causal display filters (`domain`), the fan-out hub (`service`) and its WebSocket (`api`).

Wiring (in the app): one `LiveHub` per process; the ingest path calls `hub.publish(StreamInfo, frame)` after
each committed frame and `hub.close_stream(id)` when a stream closes; `biofeedback_router(hub, resolve)`
serves `WS /biofeedback/ws`.
"""

from relearn.device_gateway.live.api import PatientResolver, biofeedback_router
from relearn.device_gateway.live.service import LiveHub, StreamInfo, Subscription, Targets

__all__ = ["LiveHub", "PatientResolver", "StreamInfo", "Subscription", "Targets", "biofeedback_router"]
