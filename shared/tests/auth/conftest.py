"""Real keys and real tokens: a development issuer in a temporary key directory."""

from __future__ import annotations

import json
from collections.abc import Callable
from importlib.resources import files
from pathlib import Path
from typing import Any

import pytest
from joserfc import jwt
from joserfc.jwk import ECKey, RSAKey

from relearn.dev_issuer import ClientRegistry, DevIssuer
from relearn.shared.auth.tokens import JwtVerifier

ISSUER = "http://127.0.0.1:8080/auth"
AUDIENCE = "relearn"

Signer = Callable[..., str]


@pytest.fixture
def clients() -> ClientRegistry:
    """The registry shipped for `make run` (so the tests also prove that file is valid)."""
    shipped = files("relearn.dev_issuer") / "dev-clients.json"
    return ClientRegistry.from_dict(json.loads(shipped.read_text(encoding="utf-8")))


@pytest.fixture
def issuer(tmp_path: Path, clients: ClientRegistry) -> DevIssuer:
    return DevIssuer(tmp_path / "keys", ISSUER, AUDIENCE, clients)


@pytest.fixture
def verifier(issuer: DevIssuer) -> JwtVerifier:
    """Verifies against the JWKS file the issuer publishes, as services do under `make run`."""
    return JwtVerifier(str(issuer.publish()), issuer=ISSUER, audience=AUDIENCE)


@pytest.fixture
def sign(issuer: DevIssuer) -> Signer:
    """Sign arbitrary claims with the issuer's real private key (for malformed-claim cases)."""

    def _sign(claims: dict[str, Any], **header: Any) -> str:
        issuer.publish()  # make sure the key exists
        data = json.loads(issuer.key_path.read_text())
        key = RSAKey.import_key(data) if data["kty"] == "RSA" else ECKey.import_key(data)
        alg = "ES256" if data["kty"] == "EC" else "RS256"
        full_header = {"alg": alg, "kid": data["kid"], **header}
        return jwt.encode(full_header, claims, key, algorithms=[full_header["alg"]])

    return _sign
