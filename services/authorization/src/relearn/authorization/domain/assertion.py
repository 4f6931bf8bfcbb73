"""Client authentication with a signed JWT (RFC 7523 §2.2, SMART Backend Services ``private_key_jwt``).

Every failure is ``invalid_client`` (the description says what, never whether the client exists). The
replay check (``jti`` never seen before) needs the store, so :func:`verify_assertion` returns the ``jti``
and its expiry for the caller to record.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from joserfc import jws
from joserfc.errors import JoseError
from joserfc.jwk import ECKey, Key, RSAKey

from relearn.authorization.domain.errors import OAuthError, invalid_client

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
# What we accept and advertise (SMART: RS384 and ES384).
ALGORITHMS = ("RS384", "ES384")
_KTY = {"RS384": "RSA", "ES384": "EC"}
_CURVE = {"ES384": "P-384"}
MAX_ASSERTION_CHARS = 8 * 1024
_JTI = re.compile(r"^[\x21-\x7e]{1,255}$")


@dataclass(frozen=True)
class Unverified:
    """What an assertion claims before its signature is checked: who (iss/sub) and with which key."""

    client_id: str
    kid: str
    alg: str
    token: jws.CompactSignature


@dataclass(frozen=True)
class VerifiedAssertion:
    client_id: str
    jti: str
    exp: float


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _claims(token: jws.CompactSignature) -> dict[str, Any]:
    try:
        claims = json.loads(token.payload or b"")
    except ValueError:
        claims = None
    if not isinstance(claims, dict):
        raise invalid_client("client_assertion: the payload is not a JSON object of claims")
    return claims


def peek(assertion: str, client_id: str | None) -> Unverified:
    """Read the header and issuer of an assertion (nothing is trusted yet)."""
    if not assertion or len(assertion) > MAX_ASSERTION_CHARS:
        raise invalid_client("client_assertion is empty or too long")
    try:
        token = jws.extract_compact(assertion.encode("ascii"))
        header = token.headers()
    except (JoseError, ValueError, TypeError, UnicodeError):
        raise invalid_client("client_assertion is not a signed JWT (header.payload.signature)") from None
    alg = header.get("alg")
    if alg not in ALGORITHMS:
        raise invalid_client(f"client_assertion: algorithm {alg!r} is not accepted (RS384 or ES384)")
    if "crit" in header:
        raise invalid_client("client_assertion: critical header extensions are not supported")
    kid = header.get("kid")
    if not isinstance(kid, str) or not kid:
        raise invalid_client("client_assertion: the header has no 'kid'")
    claims = _claims(token)
    iss, sub = claims.get("iss"), claims.get("sub")
    if not isinstance(iss, str) or not iss or iss != sub:
        raise invalid_client("client_assertion: 'iss' and 'sub' must both be the client_id")
    if client_id is not None and client_id != iss:
        raise invalid_client("client_assertion: 'iss' is not the client_id given")
    return Unverified(iss, kid, str(alg), token)


def _fits(key: dict[str, Any], kid: str, alg: str) -> bool:
    if key.get("kid") != kid or key.get("kty") != _KTY[alg]:
        return False
    if key.get("use") not in (None, "sig") or key.get("alg") not in (None, alg):
        return False
    return alg not in _CURVE or key.get("crv") == _CURVE[alg]


def select_key(keys: list[dict[str, Any]], kid: str, alg: str) -> Key:
    """Exactly one registered key matching ``kid`` and the algorithm's key type, else ``invalid_client``."""
    matching = [k for k in keys if isinstance(k, dict) and _fits(k, kid, alg)]
    if not matching:
        raise invalid_client(f"client_assertion: no registered {_KTY[alg]} key with kid {kid!r}")
    if len(matching) > 1:
        raise invalid_client(f"client_assertion: several registered keys have kid {kid!r} (ambiguous)")
    public = {k: v for k, v in matching[0].items() if k not in ("d", "p", "q", "dp", "dq", "qi", "oth")}
    try:
        return RSAKey.import_key(public) if _KTY[alg] == "RSA" else ECKey.import_key(public)
    except (JoseError, ValueError, TypeError):
        raise invalid_client(f"client_assertion: the registered key {kid!r} is unreadable") from None


def has_kid(keys: list[dict[str, Any]], kid: str) -> bool:
    return any(isinstance(k, dict) and k.get("kid") == kid for k in keys)


def verify_assertion(
    unverified: Unverified,
    keys: list[dict[str, Any]],
    *,
    token_url: str,
    now: float,
    max_lifetime_s: int,
    skew_s: int,
) -> VerifiedAssertion:
    """Check the signature (one key of the client's JWKS) and the claims of RFC 7523 / SMART Backend
    Services: ``aud`` is the token URL, ``exp`` in the future and at most ``max_lifetime_s`` ahead, a ``jti``.
    """
    key = select_key(keys, unverified.kid, unverified.alg)
    try:
        ok = jws.validate_compact(unverified.token, key, algorithms=[unverified.alg])
    except JoseError:
        ok = False
    if not ok:
        raise invalid_client("client_assertion: signature verification failed")
    claims = _claims(unverified.token)
    aud = claims.get("aud")
    audiences = [aud] if isinstance(aud, str) else aud if isinstance(aud, list) else []
    if token_url not in audiences:
        raise invalid_client(f"client_assertion: 'aud' must be the token URL {token_url}")
    exp = claims.get("exp")
    if not _is_number(exp):
        raise invalid_client("client_assertion: 'exp' is missing or not a number")
    assert isinstance(exp, int | float)
    if exp <= now - skew_s:
        raise invalid_client("client_assertion: it has expired")
    if exp > now + max_lifetime_s + skew_s:
        raise invalid_client(f"client_assertion: 'exp' is more than {max_lifetime_s} s ahead")
    for name in ("nbf", "iat"):
        value = claims.get(name)
        if value is not None and (not _is_number(value) or value > now + skew_s):
            raise invalid_client(f"client_assertion: '{name}' is in the future")
    jti = claims.get("jti")
    if not isinstance(jti, str) or not _JTI.match(jti):
        raise invalid_client("client_assertion: 'jti' is missing (1 to 255 visible characters)")
    return VerifiedAssertion(unverified.client_id, jti, float(exp))


__all__ = [
    "ALGORITHMS",
    "ASSERTION_TYPE",
    "OAuthError",
    "Unverified",
    "VerifiedAssertion",
    "has_kid",
    "peek",
    "select_key",
    "verify_assertion",
]
