"""Client key sets registered by URL (``jwks_uri``): fetched with httpx, bounded in time and size, kept as
long as the answer's ``Cache-Control: max-age`` says (capped), fetched again once when an assertion names a
``kid`` the cached set does not have (the client rotated). HTTPS only outside development and test."""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx

from relearn.authorization.config import Settings
from relearn.authorization.domain.errors import invalid_client

_MAX_AGE = re.compile(r"(?:^|,)\s*max-age\s*=\s*\"?(\d{1,10})\"?\s*(?:,|$)", re.IGNORECASE)
# An unknown kid refetches a cached set at most this often (a kid it does not have, again and again).
_MIN_REFETCH_S = 10.0


@dataclass
class _Cached:
    keys: list[dict[str, Any]]
    expires_at: float
    # When an unknown kid last made us fetch before expiry (None: never since the set was fetched).
    kid_refetch_at: float | None = None


def max_age(cache_control: str | None, default: int, cap: int) -> int:
    """Seconds a response may be kept: ``no-store``/``no-cache`` 0, ``max-age`` capped, else ``default``."""
    if not cache_control:
        return min(default, cap)
    lowered = cache_control.lower()
    if "no-store" in lowered or "no-cache" in lowered:
        return 0
    m = _MAX_AGE.search(cache_control)
    return min(int(m.group(1)), cap) if m else min(default, cap)


class JwksFetcher:
    def __init__(
        self,
        settings: Settings,
        *,
        client: httpx.Client | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._settings = settings
        self._client = client
        self._clock = clock
        self._cache: dict[str, _Cached] = {}
        self._lock = threading.Lock()

    def check_url(self, url: str) -> None:
        development = self._settings.environment in ("development", "test")
        if not url.startswith("https://") and not (development and url.startswith("http://")):
            raise invalid_client("the client's jwks_uri must be an https URL")

    def keys(self, url: str, *, want_kid: str | None = None) -> list[dict[str, Any]]:
        """The keys at ``url`` (cached); a ``want_kid`` the cached set lacks refetches it (rate-limited)."""
        self.check_url(url)
        now = self._clock()
        with self._lock:
            cached = self._cache.get(url)
        if cached is not None and now < cached.expires_at:
            if want_kid is None or any(k.get("kid") == want_kid for k in cached.keys):
                return cached.keys
            if cached.kid_refetch_at is not None and now - cached.kid_refetch_at < _MIN_REFETCH_S:
                return cached.keys
            refetch_at: float | None = now
        else:
            refetch_at = None
        keys, ttl = self._fetch(url)
        with self._lock:
            self._cache[url] = _Cached(keys, now + ttl, refetch_at)
        return keys

    def _fetch(self, url: str) -> tuple[list[dict[str, Any]], int]:
        s = self._settings
        limit = s.jwks_max_bytes
        try:
            client = self._client or httpx.Client(timeout=s.jwks_fetch_timeout_s, follow_redirects=False)
            try:
                with client.stream("GET", url, timeout=s.jwks_fetch_timeout_s) as resp:
                    if resp.status_code != 200:
                        raise invalid_client(f"the client's jwks_uri answered {resp.status_code}")
                    body = bytearray()
                    for chunk in resp.iter_bytes():
                        body += chunk
                        if len(body) > limit:
                            raise invalid_client(f"the client's JWKS is larger than {limit} bytes")
                    ttl = max_age(
                        resp.headers.get("cache-control"), s.jwks_default_max_age_s, s.jwks_max_age_cap_s
                    )
            finally:
                if self._client is None:
                    client.close()
        except httpx.HTTPError as exc:
            raise invalid_client(
                f"the client's jwks_uri could not be fetched ({type(exc).__name__})"
            ) from None
        try:
            document = json.loads(bytes(body))
        except ValueError:
            document = None
        if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
            raise invalid_client("the client's jwks_uri did not answer a JSON Web Key Set")
        return [k for k in document["keys"] if isinstance(k, dict)], ttl
