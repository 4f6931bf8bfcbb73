"""How a journey calls the platform: where it answers, the three clients' tokens, checked calls, polling."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

import httpx

from relearn.devtools.apps import wait_for
from relearn.devtools.platform import PlatformSettings
from relearn.devtools.smart import BackendClient

T = TypeVar("T")

# (client id, client secret) of a development client, or a Backend Services client with its private key.
Auth = tuple[str, str] | BackendClient
# A cached token is asked for again this long before it expires (Backend Services tokens live 300 s).
_RENEW_BEFORE_S = 30.0


class JourneyError(RuntimeError):
    """A call answered unexpectedly or a wait timed out; the message says which and shows the answer."""


def iso(t: datetime) -> str:
    """An aware datetime as FHIR writes it (``...Z`` for UTC)."""
    return t.isoformat().replace("+00:00", "Z")


@dataclass(frozen=True)
class PlatformUrls:
    """Where the platform answers: the one FHIR base URL, the issuer, each service's REST base."""

    fhir_base: str
    issuer: str
    evaluation: str
    plan: str
    sessions: str
    device_gateway: str

    @classmethod
    def from_settings(cls, settings: PlatformSettings | None = None) -> PlatformUrls:
        s = settings or PlatformSettings()

        def base(port: int) -> str:
            return f"http://{s.host}:{port}"

        return cls(
            fhir_base=s.fhir_base_url,
            issuer=s.issuer_url,
            evaluation=base(s.evaluation_port),
            plan=base(s.plan_port),
            sessions=base(s.sessions_port),
            device_gateway=base(s.device_gateway_port),
        )


class Api:
    """The platform as the journey's clients call it: the clinic (``relearn-dev``, reads and writes
    everything), an EHR that only reads (``ehr-demo``) and the clinic hub (``device-gateway-dev`` with a
    ``device`` claim). Tokens come from the development issuer once per client, scope and device."""

    def __init__(
        self,
        urls: PlatformUrls,
        *,
        timeout_s: float = 30.0,
        clinic: Auth = ("relearn-dev", "dev-secret"),
        ehr: Auth = ("ehr-demo", "ehr-demo-secret"),
        device: Auth = ("device-gateway-dev", "device-gateway-secret"),
    ) -> None:
        self.urls = urls
        self.timeout_s = timeout_s
        self.http = httpx.Client(timeout=30.0)
        self._clinic_auth = clinic
        self._ehr_auth = ehr
        self._device_auth = device
        self._tokens: dict[tuple[str, str, str | None], tuple[str, float]] = {}

    def close(self) -> None:
        self.http.close()

    def _token(self, auth: Auth, scope: str, device: str | None = None) -> str:
        """A token for the client, scope and device, kept until shortly before it expires."""
        client_id = auth.client_id if isinstance(auth, BackendClient) else auth[0]
        key = (client_id, scope, device)
        cached = self._tokens.get(key)
        if cached is None or time.monotonic() >= cached[1]:
            if isinstance(auth, BackendClient):  # a signed client assertion (SMART Backend Services)
                token = auth.token_response(scope, device=device)
            else:
                data = {"grant_type": "client_credentials", "scope": scope}
                if device:
                    data["device"] = device
                token = self.call(
                    "POST", f"{self.urls.issuer}/token", 200, f"a token for {client_id}", data=data, auth=auth
                )
            lifetime = float(token.get("expires_in", 300))
            cached = (str(token["access_token"]), time.monotonic() + max(lifetime - _RENEW_BEFORE_S, 1.0))
            self._tokens[key] = cached
        return cached[0]

    @property
    def clinician(self) -> dict[str, str]:
        """The clinic's app / backend: reads and writes everything."""
        return {"Authorization": f"Bearer {self._token(self._clinic_auth, 'system/*.read system/*.write')}"}

    @property
    def ehr(self) -> dict[str, str]:
        """An EHR backend that only reads (system/*.read)."""
        return {"Authorization": f"Bearer {self._token(self._ehr_auth, 'system/*.read')}"}

    def device_headers(self, device: str) -> dict[str, str]:
        """Device credentials: the clinic hub's token carrying its ``device`` claim (with a Backend Services
        client, obtained with the hub's own key)."""
        token = self._token(self._device_auth, "system/Observation.write", device=device)
        return {"Authorization": f"Bearer {token}"}

    @staticmethod
    def expect(resp: httpx.Response, status: int | tuple[int, ...], what: str) -> httpx.Response:
        """``resp`` if its status is one of ``status``, else a :class:`JourneyError` showing the answer."""
        wanted = (status,) if isinstance(status, int) else status
        if resp.status_code not in wanted:
            raise JourneyError(
                f"{what}: {resp.request.method} {resp.request.url} answered {resp.status_code}: "
                f"{resp.text[:2000]}"
            )
        return resp

    def call(self, method: str, url: str, status: int | tuple[int, ...], what: str, **kwargs: Any) -> Any:
        """The JSON answer of a request that must answer ``status`` (``kwargs`` go to httpx)."""
        return self.expect(self.http.request(method, url, **kwargs), status, what).json()

    def wait(self, what: str, probe: Callable[[], T | None], timeout_s: float | None = None) -> T:
        """Poll ``probe`` until it returns something truthy (events are asynchronous); never a fixed sleep."""
        try:
            value: T = wait_for(probe, timeout_s or self.timeout_s, what)
        except AssertionError as exc:  # wait_for's time-out
            raise JourneyError(str(exc)) from None
        return value
