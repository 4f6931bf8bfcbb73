"""Tokens the way a production client gets them: SMART Backend Services (``client_credentials`` with a
signed client assertion, ``private_key_jwt``), for tests, tools and the journey's device hub.

:class:`BackendClient` holds a client's private key (EC P-384, ES384; or RSA, RS384) and asks a token
endpoint for a token, with a fresh assertion (``iss`` = ``sub`` = client_id, ``aud`` = the token URL,
``exp`` one minute ahead, a new ``jti``) each time. :func:`new_key` makes a key, :func:`public_jwks` the JWKS
to register for it.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from joserfc import jwt
from joserfc.jwk import ECKey, RSAKey

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


def new_key(kid: str | None = None) -> ECKey:
    """A new EC P-384 signing key (ES384) with ``kid`` (a thumbprint when not given)."""
    key = ECKey.generate_key("P-384", auto_kid=kid is None)
    if kid is not None:
        key = ECKey.import_key({**key.as_dict(private=True), "kid": kid})
    return key


def public_jwks(*keys: ECKey | RSAKey) -> dict[str, Any]:
    """The public JWKS to register for ``keys`` (what a client's directory entry holds as ``jwks``)."""
    return {"keys": [{**k.as_dict(private=False), "kid": k.kid, "use": "sig"} for k in keys]}


def load_or_create_key(path: Path, kid: str) -> ECKey:
    """The private key kept at ``path`` (0600), created on first use."""
    if path.exists():
        return ECKey.import_key(json.loads(path.read_text(encoding="utf-8")))
    key = new_key(kid)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(json.dumps({**key.as_dict(private=True), "kid": key.kid}))
    return key


@dataclass
class BackendClient:
    """A Backend Services client: ``client_id``, its private ``key``, and the ``token_url`` it calls."""

    client_id: str
    key: ECKey | RSAKey
    token_url: str
    timeout_s: float = 30.0
    _http: httpx.Client | None = field(default=None, repr=False)

    def assertion(self, *, lifetime_s: int = 60) -> str:
        alg = "ES384" if self.key.key_type == "EC" else "RS384"
        now = int(time.time())
        claims = {
            "iss": self.client_id,
            "sub": self.client_id,
            "aud": self.token_url,
            "iat": now,
            "exp": now + lifetime_s,
            "jti": uuid.uuid4().hex,
        }
        return jwt.encode({"alg": alg, "kid": self.key.kid, "typ": "JWT"}, claims, self.key, algorithms=[alg])

    def token_response(self, scope: str, *, device: str | None = None) -> dict[str, Any]:
        form = {
            "grant_type": "client_credentials",
            "scope": scope,
            "client_assertion_type": ASSERTION_TYPE,
            "client_assertion": self.assertion(),
        }
        if device is not None:
            form["device"] = device
        resp = (self._http or httpx).post(self.token_url, data=form, timeout=self.timeout_s)
        if resp.status_code != 200:
            raise RuntimeError(f"token request refused ({resp.status_code}): {resp.text}")
        return dict(resp.json())

    def token(self, scope: str, *, device: str | None = None) -> str:
        """A bearer token for ``scope`` (a device client may name one of its bound ``device`` ids)."""
        return str(self.token_response(scope, device=device)["access_token"])
