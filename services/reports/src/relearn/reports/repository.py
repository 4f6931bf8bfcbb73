"""Where the reports service reads a course: the platform, through its front door, with its own system
credential (client credentials at ``token_url``). Services never import each other; this is HTTP only.

Every read is bounded (``max_resources`` per search, following ``next`` links) and every failure is a
:class:`SourceError` naming what could not be read: the service records it as a gap of the report.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import httpx

from relearn.reports.config import Settings


class SourceError(RuntimeError):
    """A read of the platform failed (status, time-out, bad answer): the message says which."""


class SourceNotFound(SourceError):
    """The platform answered 404 (or 410): what was asked for is not there."""


class PlatformReader:
    def __init__(self, settings: Settings, *, transport: httpx.BaseTransport | None = None) -> None:
        self.settings = settings
        self.root = settings.platform_url.rstrip("/")
        # Read FHIR at the front door's address as this service reaches it; the public base URL (in paging
        # links) is mapped onto it.
        self.fhir_base = f"{self.root}/fhir"
        self.public_fhir_base = settings.fhir_base_url.rstrip("/")
        self._http = httpx.Client(timeout=settings.http_timeout_s, transport=transport)
        self._token: tuple[str, float] | None = None

    def close(self) -> None:
        self._http.close()

    def _bearer(self) -> dict[str, str]:
        now = time.monotonic()
        if self._token is None or self._token[1] <= now:
            s = self.settings
            try:
                resp = self._http.post(
                    s.token_url,
                    data={"grant_type": "client_credentials", "scope": s.client_scope},
                    auth=(s.client_id, s.client_secret),
                )
            except httpx.HTTPError as exc:
                raise SourceError(f"token endpoint {s.token_url}: {exc}") from None
            if resp.status_code != 200:
                raise SourceError(f"token endpoint {s.token_url} answered {resp.status_code}")
            body = resp.json()
            expires = float(body.get("expires_in", 300))
            self._token = (str(body["access_token"]), now + max(10.0, expires - 30.0))
        return {
            "Authorization": f"Bearer {self._token[0]}",
            "Accept": "application/fhir+json, application/json",
        }

    def get(self, url: str, params: Mapping[str, str] | None = None) -> Any:
        """The JSON answer of a GET (an absolute URL, or a path under the front door's root)."""
        if not url.startswith("http"):
            url = f"{self.root}{url}"
        try:
            resp = self._http.get(url, params=params, headers=self._bearer())
        except httpx.HTTPError as exc:
            raise SourceError(f"GET {url}: {exc}") from None
        if resp.status_code in (404, 410):
            raise SourceNotFound(f"GET {url} answered {resp.status_code}")
        if resp.status_code != 200:
            raise SourceError(f"GET {url} answered {resp.status_code}")
        try:
            return resp.json()
        except ValueError:
            raise SourceError(f"GET {url}: not JSON") from None

    def _entries(self, url: str, params: Mapping[str, str] | None) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        next_url: str | None = url
        next_params = params
        while next_url and len(out) < self.settings.max_resources:
            bundle = self.get(next_url, next_params)
            out.extend(
                e["resource"]
                for e in bundle.get("entry", [])
                if isinstance(e.get("resource"), dict)
                and (e.get("search") or {}).get("mode", "match") == "match"
            )
            next_url = next(
                (link["url"] for link in bundle.get("link", []) if link.get("relation") == "next"), None
            )
            if next_url and next_url.startswith(self.public_fhir_base):
                next_url = self.fhir_base + next_url[len(self.public_fhir_base) :]
            next_params = None
        return out[: self.settings.max_resources]

    def search(self, resource_type: str, params: Mapping[str, str]) -> list[dict[str, Any]]:
        """Every match of a FHIR search on the base URL (at most ``max_resources``)."""
        return self._entries(f"{self.fhir_base}/{resource_type}", {"_count": "200", **params})

    def history(self, reference: str) -> list[dict[str, Any]]:
        """Every version of one resource (``CarePlan/x/_history``), deletions left out."""
        return self._entries(f"{self.fhir_base}/{reference}/_history", {"_count": "200"})

    def read(self, reference: str) -> dict[str, Any]:
        found = self.get(f"{self.fhir_base}/{reference}")
        if not isinstance(found, dict):
            raise SourceError(f"{reference}: not a resource")
        return found
