"""JSON Web Key Sets that tokens are verified against: loading, and a cache that follows key rotation.

A JWKS comes from a file (``var/dev-issuer/jwks.json`` under ``make run``) or an http(s) URL (an
authorization server's ``jwks_uri``). Only public signing keys usable with the algorithms we accept
(RSA for RS256/RS384, EC P-256/P-384 for ES256/ES384) are kept: a symmetric or private key in a *public*
key set is a misconfiguration, so private members are dropped and symmetric keys skipped.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from joserfc.errors import JoseError
from joserfc.jwk import ECKey, Key, KeySet, RSAKey

from relearn.shared.settings import default_var_dir

log = logging.getLogger(__name__)

# Key types and curves that can verify RS256 / ES256 signatures.
_USABLE_EC_CURVES = frozenset({"P-256", "P-384"})
_MAX_JWKS_BYTES = 512 * 1024


def default_dev_key_dir() -> Path:
    """Where the development issuer keeps its key and publishes ``jwks.json``: ``var/dev-issuer``."""
    return default_var_dir() / "dev-issuer"


class JwksError(Exception):
    """The key set cannot be read, fetched or parsed."""


def _is_url(source: str) -> bool:
    return source.startswith(("http://", "https://"))


def parse_jwks(document: Any, *, origin: str = "JWKS") -> KeySet:
    """Turn a JWKS document (``{"keys": [...]}``) into a KeySet of public signature keys.

    Keys that cannot verify RS256/ES256 (symmetric, other curves, ``use: enc``) are skipped;
    :class:`JwksError` is raised when nothing usable is left.
    """
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        raise JwksError(f"{origin} is not a JSON Web Key Set (an object with a 'keys' array)")
    keys: list[Key] = []
    for entry in document["keys"]:
        if not isinstance(entry, dict):
            continue
        kty, use = entry.get("kty"), entry.get("use")
        if use not in (None, "sig"):
            continue
        if kty == "EC" and entry.get("crv") not in _USABLE_EC_CURVES:
            continue
        if kty not in ("RSA", "EC"):
            log.warning("Skipping a %s key in %s: only RSA and EC P-256/P-384 keys are accepted", kty, origin)
            continue
        try:
            imported = RSAKey.import_key(entry) if kty == "RSA" else ECKey.import_key(entry)
            # Keep the public half only, with kid/alg as published.
            params = {k: v for k, v in entry.items() if k in ("kid", "alg", "use")}
            public = imported.as_dict(private=False)
            public.update(params)
            keys.append(RSAKey.import_key(public) if kty == "RSA" else ECKey.import_key(public))
        except (JoseError, ValueError, TypeError) as exc:
            log.warning("Skipping an unreadable key in %s: %s", origin, exc)
    if not keys:
        raise JwksError(f"{origin} holds no RSA or EC P-256/P-384 signature key")
    return KeySet(keys)


def load_jwks(source: str, *, client: httpx.Client | None = None, timeout_s: float = 5.0) -> KeySet:
    """Read a JSON Web Key Set from a file path or an http(s) URL, once.

    ``client`` lets callers (and tests) supply the httpx client used for URLs; without it a
    short-lived client with ``timeout_s`` is used. Raises :class:`JwksError` on any failure.
    """
    if not source:
        raise JwksError("No JWKS source configured")
    if _is_url(source):
        try:
            if client is None:
                with httpx.Client(timeout=timeout_s) as own:
                    response = own.get(source, headers={"Accept": "application/json"})
            else:
                response = client.get(source, headers={"Accept": "application/json"})
        except httpx.HTTPError as exc:
            raise JwksError(f"Cannot fetch the JWKS at {source}: {exc}") from exc
        if response.status_code != 200:
            raise JwksError(f"Fetching the JWKS at {source} returned HTTP {response.status_code}")
        raw = response.content
    else:
        try:
            raw = Path(source).read_bytes()
        except OSError as exc:
            raise JwksError(f"Cannot read the JWKS file {source}: {exc.strerror or exc}") from exc
    if len(raw) > _MAX_JWKS_BYTES:
        raise JwksError(f"The JWKS at {source} is larger than {_MAX_JWKS_BYTES} bytes")
    try:
        document = json.loads(raw)
    except ValueError as exc:
        raise JwksError(f"The JWKS at {source} is not valid JSON") from exc
    return parse_jwks(document, origin=source)


class JwksCache:
    """A JWKS loaded lazily from a file or URL and refreshed when the issuer rotates keys.

    The set is (re)loaded on first use, when it is older than ``max_age_s``, and when a token
    names a ``kid`` the set does not hold; refreshes are at most one per ``min_refresh_interval_s``
    so a flood of tokens with made-up kids cannot hammer the issuer. Lazy loading lets a service
    start before the issuer has published its keys. Safe to share between threads.
    """

    def __init__(
        self,
        source: str,
        *,
        client: httpx.Client | None = None,
        min_refresh_interval_s: float = 30.0,
        max_age_s: float = 3600.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.source = source
        self._client = client
        self._min_refresh_interval_s = min_refresh_interval_s
        self._max_age_s = max_age_s
        self._clock = clock
        self._lock = threading.Lock()
        self._keys: KeySet | None = None
        self._loaded_at = 0.0
        self._last_attempt: float | None = None
        self._last_error: JwksError | None = None

    def _refresh_locked(self) -> None:
        now = self._clock()
        # Until a first load succeeds (the issuer may still be starting), retry sooner.
        interval = self._min_refresh_interval_s
        if self._keys is None:
            interval = min(1.0, interval)
        if self._last_attempt is not None and now - self._last_attempt < interval:
            return
        self._last_attempt = now
        try:
            self._keys = load_jwks(self.source, client=self._client)
            self._loaded_at = now
            self._last_error = None
        except JwksError as exc:
            # Keep serving the keys we have: a blip at the issuer must not log everyone out.
            log.warning("JWKS refresh failed: %s", exc)
            self._last_error = exc

    def key_set(self, kid: str | None = None) -> KeySet:
        """The current keys, refreshed first if stale or if ``kid`` is not among them.

        Raises :class:`JwksError` when no key set could ever be loaded.
        """
        with self._lock:
            stale = self._keys is None or self._clock() - self._loaded_at > self._max_age_s
            unknown_kid = kid is not None and self._keys is not None and all(k.kid != kid for k in self._keys)
            if stale or unknown_kid:
                self._refresh_locked()
            if self._keys is None:
                raise self._last_error or JwksError(f"The JWKS at {self.source} is not loaded yet")
            return self._keys
