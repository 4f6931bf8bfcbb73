"""Reading a notification's focus resource for ``full-resource`` payloads, at send time.

The focus lives in another service (CarePlan and Goal in the plan service, Observation in the evaluation
service, ...): it is read through the front door's FHIR base URL (``SUBSCRIPTIONS_FOCUS_BASE_URL``, default
``SUBSCRIPTIONS_FHIR_BASE_URL``) with the subscriptions service's own credential: an OAuth2 client-credentials
token (``SUBSCRIPTIONS_FOCUS_CLIENT_ID`` / ``_CLIENT_SECRET`` / ``_SCOPE``) from the configured issuer's token
endpoint (``SUBSCRIPTIONS_FOCUS_TOKEN_URL``, default ``<auth issuer>/token``), kept until shortly before it
expires.

The version read is the one the event was about: ``vread`` of ``<Type>/<id>/_history/<versionId>`` when the
event names the version (plan events: the CarePlan's, a Goal's), else the newest version written at or before
the event's time (the instance history), so a later update never leaks into an earlier notification.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import httpx

from relearn.shared.fhir import as_utc
from relearn.subscriptions.config import Settings

logger = logging.getLogger(__name__)

# Versions looked at when the event does not name its focus version (the newest first).
HISTORY_PAGE = 50


@dataclass(frozen=True)
class Focus:
    """The focus resource as it was (``resource``), or why it is not included (``reason``); ``retry``: a
    passing failure (the front door, the issuer or the network): try the notification again later."""

    resource: dict[str, Any] | None = None
    reason: str | None = None
    retry: bool = False


class FocusReader:
    def __init__(self, settings: Settings, client: httpx.Client | None = None) -> None:
        self._base = (settings.focus_base_url or settings.fhir_base_url).rstrip("/")
        self._token_url = settings.focus_token_url or f"{settings.auth_issuer.rstrip('/')}/token"
        self._client_id = settings.focus_client_id
        self._secret = settings.focus_client_secret.get_secret_value()
        self._scope = settings.focus_scope
        self._timeout = settings.focus_timeout_s
        self._http = client or httpx.Client(follow_redirects=False)
        self._lock = threading.Lock()
        self._token: tuple[str, float] | None = None  # (access token, monotonic expiry)

    @property
    def configured(self) -> bool:
        return bool(self._client_id)

    # -- the service's own token -------------------------------------------------------------------------
    def _bearer(self) -> str:
        with self._lock:
            if self._token is not None and time.monotonic() < self._token[1]:
                return self._token[0]
            resp = self._http.post(
                self._token_url,
                data={"grant_type": "client_credentials", "scope": self._scope},
                auth=(self._client_id, self._secret),
                timeout=self._timeout,
            )
            if resp.status_code != 200:
                # 4xx: the credential or its scope is refused (configuration: go id-only, saying so);
                # 5xx: the issuer is down for now (try the notification again later).
                raise _TokenRefused(
                    f"the token endpoint answered HTTP {resp.status_code}", retry=resp.status_code >= 500
                )
            body = resp.json()
            ttl = float(body.get("expires_in") or 300)
            self._token = (str(body["access_token"]), time.monotonic() + max(ttl - 30, ttl / 2))
            return self._token[0]

    def _forget_token(self) -> None:
        with self._lock:
            self._token = None

    def _get(self, path: str, params: dict[str, str] | None = None) -> httpx.Response:
        for attempt in range(2):
            headers = {"Authorization": f"Bearer {self._bearer()}", "Accept": "application/fhir+json"}
            resp = self._http.get(
                f"{self._base}/{path}", params=params, headers=headers, timeout=self._timeout
            )
            if resp.status_code != 401 or attempt:
                return resp
            self._forget_token()  # expired or the issuer's key rolled: one more try with a new token
        raise AssertionError("unreachable")

    # -- the focus ---------------------------------------------------------------------------------------
    def read(self, focus: str, version: str | None, at: datetime) -> Focus:
        """``focus`` (``Type/id``) as it was at the event: version ``version``, else the newest at ``at``."""
        if not self.configured:
            return Focus(reason="the subscriptions service has no credential to read it with")
        try:
            if version is not None:
                return self._answer(focus, self._get(f"{focus}/_history/{version}"))
            resp = self._get(f"{focus}/_history", {"_count": str(HISTORY_PAGE)})
            answer = self._answer(focus, resp)
            if answer.resource is None:
                return answer
            return self._as_of(focus, answer.resource, at)
        except _TokenRefused as exc:
            return Focus(reason=f"no token to read it with: {exc}", retry=exc.retry)
        except (httpx.HTTPError, ValueError, KeyError) as exc:
            logger.info("focus read failed", extra={"focus": focus, "error": f"{type(exc).__name__}: {exc}"})
            return Focus(reason=f"reading it failed ({type(exc).__name__})", retry=True)

    @staticmethod
    def _answer(focus: str, resp: httpx.Response) -> Focus:
        if resp.status_code == 200:
            return Focus(resource=resp.json())
        if resp.status_code in (404, 410):
            return Focus(reason=f"{focus} (that version) is not there any more (HTTP {resp.status_code})")
        if resp.status_code in (401, 403):
            return Focus(reason=f"the subscriptions service may not read {focus} (HTTP {resp.status_code})")
        if resp.status_code >= 500 or resp.status_code == 429:
            return Focus(reason=f"reading {focus} failed (HTTP {resp.status_code})", retry=True)
        return Focus(reason=f"reading {focus} answered HTTP {resp.status_code}")

    @staticmethod
    def _as_of(focus: str, history: dict[str, Any], at: datetime) -> Focus:
        """The newest version of the history written at or before ``at`` (the oldest listed if none is)."""
        versions: list[tuple[datetime, dict[str, Any]]] = []
        for entry in history.get("entry") or []:
            resource = entry.get("resource")
            if not isinstance(resource, dict):
                continue  # a deletion
            updated = (resource.get("meta") or {}).get("lastUpdated")
            if isinstance(updated, str):
                versions.append((as_utc(datetime.fromisoformat(updated)), resource))
        if not versions:
            return Focus(reason=f"{focus} has no readable version")
        versions.sort(key=lambda v: v[0])
        before = [r for stamp, r in versions if stamp <= as_utc(at)]
        return Focus(resource=before[-1] if before else versions[0][1])


class _TokenRefused(Exception):
    def __init__(self, message: str, *, retry: bool) -> None:
        super().__init__(message)
        self.retry = retry
