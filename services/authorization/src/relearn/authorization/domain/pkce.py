"""PKCE (RFC 7636), S256 only: ``plain`` is never accepted."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re

_VERIFIER = re.compile(r"^[A-Za-z0-9\-._~]{43,128}$")
_CHALLENGE = re.compile(r"^[A-Za-z0-9\-_]{43}$")


def valid_challenge(challenge: str | None, method: str | None) -> str | None:
    """Why the authorization request's PKCE parameters are refused, or None when they are fine."""
    if not challenge:
        return "code_challenge is required (PKCE, S256)"
    if method != "S256":
        return f"code_challenge_method must be S256 (got {method!r}; plain is not supported)"
    if not _CHALLENGE.match(challenge):
        return "code_challenge must be the base64url SHA-256 of the verifier (43 characters)"
    return None


def challenge_of(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def verifier_matches(verifier: str | None, challenge: str) -> bool:
    if not verifier or not _VERIFIER.match(verifier):
        return False
    return hmac.compare_digest(challenge_of(verifier), challenge)
