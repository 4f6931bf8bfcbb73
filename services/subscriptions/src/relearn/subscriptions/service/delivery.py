"""The rest-hook sender: delivers each subscription's numbered events, in order, until acknowledged.

A background worker. Every ``delivery_poll_s`` (up to a second while idle) it leases the rest-hook
subscriptions with something to do (one sender at a time per subscription, so each stays in order), and for
each: the handshake if it was not done, else the next events after the last acknowledged one (at most
max-count per notification), else a heartbeat when one is due. A 2xx acknowledges; anything else is retried
after a jittered exponential back-off, for ever: after ``timeout`` seconds of failures the status becomes
``error`` (and heartbeats, once one gets through, say so) but nothing is dropped. Only the owner turns a
subscription ``off``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta

import httpx
from sqlalchemy.engine import Engine

from relearn.shared.fhir import as_utc
from relearn.shared.service import transaction
from relearn.subscriptions import repository
from relearn.subscriptions.domain.backoff import retry_delay
from relearn.subscriptions.service import Subscriptions, now
from relearn.subscriptions.tables import SubscriptionState

logger = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Relearn-Signature"
LEASE_S = 120.0
# Notifications sent for one subscription per lease before it goes back to the queue (fairness).
BURST = 20
# The longest wait between two looks for due work while nothing happens (see RestHookSender._run).
IDLE_POLL_MAX_S = 1.0


def sign(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class RestHookSender:
    group_id = "subscriptions-rest-hook"

    def __init__(
        self,
        engine: Engine,
        subscriptions: Subscriptions,
        *,
        client: httpx.Client | None = None,
        workers: int = 8,
    ) -> None:
        self._engine = engine
        self._subs = subscriptions
        self._settings = subscriptions.settings
        self._client = client or httpx.Client(follow_redirects=False)
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="rest-hook")
        self._workers = workers
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- lifecycle -----------------------------------------------------------------------------------
    def start(self) -> None:
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="rest-hook-sender", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 10.0) -> None:
        self._stop.set()
        self._subs.wake.set()  # end the idle wait now
        if self._thread is not None:
            self._thread.join(timeout_s)
            self._thread = None

    def _run(self) -> None:
        # Idle means idle (issue 16): after a round with nothing to send the wait doubles, from
        # ``delivery_poll_s`` up to IDLE_POLL_MAX_S; events recorded in this process (``Subscriptions.wake``)
        # bring it back to ``delivery_poll_s`` at once (they may not be committed yet: the next short round
        # sees them). A subscription created through another process waits at most IDLE_POLL_MAX_S.
        poll = self._settings.delivery_poll_s
        wait = poll
        while not self._stop.is_set():
            try:
                busy = self.run_once()
            except Exception:
                logger.warning("rest-hook round failed", exc_info=True)
                busy = False
            if busy:
                wait = poll
                continue
            if self._subs.wake.wait(wait):
                self._subs.wake.clear()
                wait = poll
            else:
                wait = min(wait * 2, max(poll, IDLE_POLL_MAX_S))

    def run_once(self) -> bool:
        """One round: lease what is due and deliver it; True when something was sent."""
        at = now()
        with transaction(self._engine) as session:
            ids = repository.claim_due(session, at, at + timedelta(seconds=LEASE_S), self._workers * 4)
        if not ids:
            return False
        results = list(self._pool.map(self._deliver_one, ids))
        return any(results)

    # -- one subscription ------------------------------------------------------------------------------
    def _deliver_one(self, id: str) -> bool:
        """Up to ``BURST`` notifications in a row for one leased subscription, in order, while they work."""
        sent = False
        try:
            for _ in range(BURST):
                if not self._deliver(id):
                    break
                sent = True
        except Exception:
            logger.warning("rest-hook delivery failed", extra={"subscription": id}, exc_info=True)
        with transaction(self._engine) as session:  # back to the queue (next_attempt_at says when)
            repository.release(session, id)
        return sent

    def _deliver(self, id: str) -> bool:
        at = now()
        with transaction(self._engine) as session:
            state = repository.get_state(session, id)
            if state is None or state.channel != "rest-hook":
                return False
            if not state.handshake_done:
                kind, events = "handshake", []
            elif state.acked_through < state.events_since_start:
                kind = "event-notification"
                events = list(repository.events(session, id, state.acked_through + 1, None, state.max_count))
            elif state.heartbeat_s and (
                state.last_sent_at is None
                or at - as_utc(state.last_sent_at) >= timedelta(seconds=state.heartbeat_s)
            ):
                kind, events = "heartbeat", []
            else:
                if state.heartbeat_s:  # nothing until the next heartbeat is due
                    base = as_utc(state.last_sent_at) if state.last_sent_at else at
                    state.next_attempt_at = base + timedelta(seconds=state.heartbeat_s)
                state.lease_until = None
                repository.save(session, state)
                return False
        # Outside the transaction: a full-resource notification reads each focus through the FHIR base URL.
        bundle, later = self._subs.notification(state, kind, events)
        if later is not None:
            error: str | None = f"the focus could not be read: {later}"
        else:
            body = json.dumps(bundle, separators=(",", ":")).encode()
            headers = self._headers(state, body)
            error = self._post(state.endpoint or "", body, headers, float(state.timeout_s))
        last = events[-1].number if events else None
        with transaction(self._engine) as session:
            state = repository.get_state(session, id, lock=True)
            if state is None:
                return False
            before = state.status
            self._record(state, kind, last, error, at)
            state.lease_until = at + timedelta(seconds=LEASE_S)  # still ours until released
            repository.save(session, state)
            if state.status != before:
                self._subs.set_resource_status(session, state)
        return error is None

    def _headers(self, state: SubscriptionState, body: bytes) -> dict[str, str]:
        headers: dict[str, str] = {name: value for name, value in json.loads(state.headers)}
        headers["Content-Type"] = "application/fhir+json"
        headers[SIGNATURE_HEADER] = sign(state.secret, body)
        return headers

    def _post(self, endpoint: str, body: bytes, headers: dict[str, str], timeout: float) -> str | None:
        """None when acknowledged (2xx), else what went wrong."""
        try:
            resp = self._client.post(endpoint, content=body, headers=headers, timeout=timeout)
        except httpx.HTTPError as exc:
            return f"{type(exc).__name__}: {exc}"[:500]
        if 200 <= resp.status_code < 300:
            return None
        return f"HTTP {resp.status_code} from the endpoint"

    def _record(
        self, state: SubscriptionState, kind: str, last: int | None, error: str | None, at: datetime
    ) -> None:
        state.lease_until = None
        settings = self._settings
        if error is None:
            state.last_sent_at = now()
            state.failures = 0
            state.first_failure_at = None
            state.next_attempt_at = None
            state.last_error = None
            if kind == "handshake":
                state.handshake_done = True
            if last is not None:
                state.acked_through = max(state.acked_through, last)
            if state.status in ("requested", "error"):
                state.status = "active"
            return
        state.failures += 1
        state.first_failure_at = as_utc(state.first_failure_at) if state.first_failure_at else at
        state.last_error = f"{kind} failed: {error}"
        delay = retry_delay(state.failures, base_s=settings.retry_base_s, cap_s=settings.retry_cap_s)
        state.next_attempt_at = now() + timedelta(seconds=delay)
        if state.status != "off" and now() - state.first_failure_at >= timedelta(seconds=state.timeout_s):
            state.status = "error"
        logger.info(
            "rest-hook delivery failed; will retry",
            extra={"subscription": state.id, "kind": kind, "failures": state.failures, "error": error},
        )
