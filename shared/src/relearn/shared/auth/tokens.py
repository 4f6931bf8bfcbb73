"""Bearer token verification: a signed JWT access token becomes a :class:`Principal`.

Services put a :class:`JwtVerifier` on ``app.state.token_verifier``; the ``PrincipalDep``
dependency calls its :meth:`JwtVerifier.verify`. Only asymmetric signatures (RS256, ES256, and the
SMART algorithms RS384, ES384)
checked against the issuer's published JSON Web Key Set are accepted: ``alg: none`` and
HMAC tokens are refused, since anyone holding an HMAC secret could mint tokens.

Every failure is an :class:`Unauthorized` (401) whose ``WWW-Authenticate`` header follows
RFC 6750: ``Bearer error="invalid_token", error_description="..."``.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Protocol, TypeGuard

import httpx
from joserfc import jws
from joserfc.errors import JoseError
from joserfc.jwk import Key, KeySet

# load_jwks is re-exported: one import for verification concerns.
from relearn.shared.auth.keys import JwksCache, JwksError, default_dev_key_dir, load_jwks
from relearn.shared.auth.principal import Principal
from relearn.shared.auth.scopes import parse_scopes
from relearn.shared.fhir.errors import Unauthorized
from relearn.shared.settings import ServiceSettings

__all__ = [
    "ACCEPTED_ALGORITHMS",
    "JwtVerifier",
    "KeySource",
    "invalid_token",
    "load_jwks",
    "verifier_from_settings",
]

ACCEPTED_ALGORITHMS = ("RS256", "ES256", "RS384", "ES384")
_EC_CURVES = {"ES256": "P-256", "ES384": "P-384"}
_MAX_TOKEN_CHARS = 16 * 1024
# RFC 6750 §3: error_description is limited to these characters.
_NOT_ALLOWED_IN_DESCRIPTION = re.compile(r"[^\x20-\x21\x23-\x5b\x5d-\x7e]")


class KeySource(Protocol):
    """Where verification keys come from; :class:`JwksCache` is the usual one."""

    def key_set(self, kid: str | None = None) -> KeySet: ...


class _FixedKeys:
    def __init__(self, keys: KeySet) -> None:
        self._keys = keys

    def key_set(self, kid: str | None = None) -> KeySet:
        return self._keys


def invalid_token(description: str) -> Unauthorized:
    """The 401 for a token that was presented but cannot be accepted (RFC 6750 ``invalid_token``)."""
    safe = _NOT_ALLOWED_IN_DESCRIPTION.sub("'", description)
    return Unauthorized(
        f"Invalid bearer token: {description}",
        headers={"WWW-Authenticate": f'Bearer error="invalid_token", error_description="{safe}"'},
    )


def _is_number(value: object) -> TypeGuard[int | float]:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _key_fits(key: Key, alg: str) -> bool:
    if key.get("use") not in (None, "sig") or key.alg not in (None, alg):
        return False
    if alg.startswith("RS"):
        return key.key_type == "RSA"
    return key.key_type == "EC" and key.get("crv") == _EC_CURVES[alg]


def _optional_str(claims: dict[str, Any], name: str) -> str | None:
    value = claims.get(name)
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise invalid_token(f"claim '{name}' must be a non-empty string")
    return value


class JwtVerifier:
    """Verifies RS256/ES256/RS384/ES384 JWT access tokens from one issuer, for one audience.

    ``jwks`` is a ready :class:`KeySet`, a :class:`KeySource` (such as :class:`JwksCache`, which
    follows key rotation) or a file path / http(s) URL that is wrapped in a :class:`JwksCache`.
    ``leeway_s`` tolerates clock skew between the issuer and this service.
    """

    def __init__(
        self,
        jwks: KeySet | KeySource | str,
        *,
        issuer: str,
        audience: str,
        leeway_s: float = 30,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if isinstance(jwks, str):
            self._keys: KeySource = JwksCache(jwks)
        elif isinstance(jwks, KeySet):
            self._keys = _FixedKeys(jwks)
        else:
            self._keys = jwks
        self.issuer = issuer
        self.audience = audience
        self.leeway_s = leeway_s
        self._clock = clock
        self._verified = _SignatureCache()

    def verify(self, token: str) -> Principal:
        """Check the token's signature and claims and return who is calling.

        Raises :class:`Unauthorized` (with an RFC 6750 ``WWW-Authenticate`` header) on any failure.
        """
        claims = self.verified_claims(token)
        subject = claims["sub"]
        client_id = _optional_str(claims, "client_id") or _optional_str(claims, "azp") or subject
        raw_scope = claims.get("scope", "")
        if isinstance(raw_scope, list) and all(isinstance(s, str) for s in raw_scope):
            raw_scope = " ".join(raw_scope)
        if not isinstance(raw_scope, str):
            raise invalid_token("claim 'scope' must be a space-separated string")
        return Principal(
            subject=subject,
            client_id=client_id,
            scopes=parse_scopes(raw_scope),
            patient=_optional_str(claims, "patient"),
            device=_optional_str(claims, "device"),
            fhir_user=_optional_str(claims, "fhirUser"),
            raw_scope=raw_scope,
            expires_at=datetime.fromtimestamp(claims["exp"], UTC),  # a number: `_check_claims` saw to it
        )

    def verified_claims(self, token: str) -> dict[str, Any]:
        """The token's claims after the signature, issuer, audience and time checks."""
        claims = self._verified.get(token, self._clock())
        if claims is None:
            claims = self._verify_signature(token)
            self._verified.put(token, claims, self._clock())
        self._check_claims(claims)  # every time: a cached token still expires on time
        return dict(claims)

    def _verify_signature(self, token: str) -> dict[str, Any]:
        if not isinstance(token, str) or not token or len(token) > _MAX_TOKEN_CHARS:
            raise invalid_token("the token is empty or too long")
        try:
            obj = jws.extract_compact(token.encode("ascii"))
            header = obj.headers()
        except (JoseError, ValueError, TypeError, UnicodeError):
            raise invalid_token("the token is not a signed JWT (header.payload.signature)") from None
        alg = header.get("alg")
        if alg not in ACCEPTED_ALGORITHMS:
            raise invalid_token(
                f"algorithm '{alg}' is not accepted; tokens must be signed with RS256/ES256/RS384/ES384"
            )
        if "crit" in header:
            raise invalid_token("critical header extensions are not supported")
        kid = header.get("kid")
        if kid is not None and not isinstance(kid, str):
            raise invalid_token("header 'kid' must be a string")
        try:
            keys = self._keys.key_set(kid)
        except JwksError as exc:
            raise invalid_token(f"the issuer's signing keys could not be loaded ({exc})") from None
        candidates = [k for k in keys if _key_fits(k, alg) and (kid is None or k.kid == kid)]
        if not candidates:
            which = f"with kid '{kid}'" if kid is not None else f"for {alg}"
            raise invalid_token(f"no signing key {which} in the issuer's key set")
        if not any(self._signature_ok(obj, key, alg) for key in candidates):
            raise invalid_token("signature verification failed")
        try:
            claims = json.loads(obj.payload or b"")
        except ValueError:
            claims = None
        if not isinstance(claims, dict):
            raise invalid_token("the payload is not a JSON object of claims")
        return claims

    @staticmethod
    def _signature_ok(obj: jws.CompactSignature, key: Key, alg: str) -> bool:
        try:
            return jws.validate_compact(obj, key, algorithms=[alg])
        except JoseError:
            return False

    def _check_claims(self, claims: dict[str, Any]) -> None:
        now = self._clock()
        iss = claims.get("iss")
        if iss != self.issuer:
            raise invalid_token(f"issuer '{iss}' is not the expected '{self.issuer}'")
        aud = claims.get("aud")
        audiences = [aud] if isinstance(aud, str) else aud if isinstance(aud, list) else []
        if self.audience not in audiences:
            raise invalid_token(f"audience {aud!r} does not include '{self.audience}'")
        exp = claims.get("exp")
        if not _is_number(exp):
            raise invalid_token("claim 'exp' (expiry time) is missing or not a number")
        if now > exp + self.leeway_s:
            raise invalid_token(f"the token expired at {_iso(exp)}")
        nbf = claims.get("nbf")
        if nbf is not None and (not _is_number(nbf) or nbf > now + self.leeway_s):
            raise invalid_token("the token is not valid yet (nbf)")
        iat = claims.get("iat")
        if iat is not None and (not _is_number(iat) or iat > now + self.leeway_s):
            raise invalid_token("the token was issued in the future (iat)")
        sub = claims.get("sub")
        if not isinstance(sub, str) or not sub:
            raise invalid_token("claim 'sub' (subject) is missing")


def verifier_from_settings(settings: ServiceSettings, *, client: httpx.Client | None = None) -> JwtVerifier:
    """The verifier a service puts on ``app.state.token_verifier``, from ``auth_jwks``/``auth_issuer``/
    ``auth_audience``. Keys are loaded lazily (and on rotation), so the issuer may start later.

    Without ``auth_jwks``, development and test use ``var/dev-issuer/jwks.json`` (where the
    development issuer publishes by default); other environments refuse to start.
    """
    source = settings.auth_jwks
    if not source:
        if settings.environment not in ("development", "test"):
            prefix = settings.model_config.get("env_prefix", "")
            raise ValueError(f"{prefix}AUTH_JWKS is not set: give a JWKS file path or http(s) URL")
        # Where the development issuer publishes by default (make run).
        source = str(default_dev_key_dir() / "jwks.json")
    return JwtVerifier(
        JwksCache(source, client=client),
        issuer=settings.auth_issuer,
        audience=settings.auth_audience,
    )


class _SignatureCache:
    """Tokens whose signature was verified, with their claims (performance, issue 16).

    Every request of a client carries the same token, and checking its signature is most of what the
    auth costs. A verified token is remembered, keyed by its exact text, for at most ``ttl_s`` (so a key
    the issuer withdraws stops working within a minute); the claim checks (issuer, audience, expiry)
    still run on every request. Bounded: the least recently used of ``size`` entries goes first.
    """

    def __init__(self, size: int = 1024, ttl_s: float = 60.0) -> None:
        self._size = size
        self._ttl_s = ttl_s
        self._entries: OrderedDict[str, tuple[float, dict[str, Any]]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, token: str, now: float) -> dict[str, Any] | None:
        with self._lock:
            entry = self._entries.get(token)
            if entry is None:
                return None
            if now - entry[0] > self._ttl_s or now < entry[0]:
                del self._entries[token]
                return None
            self._entries.move_to_end(token)
            return entry[1]

    def put(self, token: str, claims: dict[str, Any], now: float) -> None:
        with self._lock:
            self._entries[token] = (now, claims)
            self._entries.move_to_end(token)
            while len(self._entries) > self._size:
                self._entries.popitem(last=False)
