"""The issuer's signing keys: a JWKS file of private keys; the first signs, all are published.

Rotation: put the new key first (it signs from the next start), keep the old one published until every
token it signed has expired (access tokens live at most 300 s, id tokens as long), then drop it.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import uuid
from pathlib import Path
from typing import Any

from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import ECKey, Key, KeySet, RSAKey

_PRIVATE_MEMBERS = ("d", "p", "q", "dp", "dq", "qi", "oth")


def _alg_of(key: Key) -> str:
    if key.key_type == "RSA":
        return "RS384"
    if key.get("crv") == "P-384":
        return "ES384"
    raise ValueError("signing keys must be RSA (RS384) or EC P-384 (ES384)")


def _create(path: Path) -> None:
    key = ECKey.generate_key("P-384", auto_kid=True)
    document = {"keys": [{**key.as_dict(private=True), "kid": key.kid, "alg": "ES384", "use": "sig"}]}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(json.dumps(document))
        with contextlib.suppress(FileExistsError):  # two processes starting at once: the first key wins
            os.link(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


class SigningKeys:
    """Loads the private JWKS at ``path`` (created with one EC P-384 key when ``create`` and missing)."""

    def __init__(self, path: Path, *, create: bool) -> None:
        self.path = Path(path)
        self._create = create
        self._lock = threading.Lock()
        self._keys: list[Key] | None = None

    def _load(self) -> list[Key]:
        with self._lock:
            if self._keys is None:
                if not self.path.exists():
                    if not self._create:
                        raise ValueError(f"AUTHORIZATION_SIGNING_KEYS_FILE {self.path} does not exist")
                    _create(self.path)
                document = json.loads(self.path.read_text(encoding="utf-8"))
                entries = document.get("keys") if isinstance(document, dict) else None
                if not isinstance(entries, list) or not entries:
                    raise ValueError(f"{self.path} is not a JWKS of private keys")
                keys: list[Key] = []
                for entry in entries:
                    key: Key = (
                        RSAKey.import_key(entry) if entry.get("kty") == "RSA" else ECKey.import_key(entry)
                    )
                    if not key.is_private:
                        raise ValueError(f"{self.path}: key {entry.get('kid')!r} has no private part")
                    if not entry.get("kid"):
                        raise ValueError(f"{self.path}: every key needs a 'kid'")
                    _alg_of(key)
                    keys.append(key)
                self._keys = keys
            return self._keys

    def public_jwks(self) -> dict[str, Any]:
        out = []
        for key in self._load():
            public: dict[str, Any] = {
                k: v for k, v in key.as_dict(private=False).items() if k not in _PRIVATE_MEMBERS
            }
            public.update({"kid": key.kid, "alg": _alg_of(key), "use": "sig"})
            out.append(public)
        return {"keys": out}

    @property
    def algorithm(self) -> str:
        return _alg_of(self._load()[0])

    def sign(self, claims: dict[str, Any], *, typ: str = "JWT") -> str:
        key = self._load()[0]
        alg = _alg_of(key)
        return jwt.encode({"alg": alg, "kid": key.kid, "typ": typ}, claims, key, algorithms=[alg])

    def verify(self, token: str) -> dict[str, Any] | None:
        """The claims of a token this issuer signed (any published key), or None (no time checks here)."""
        if not token or len(token) > 16 * 1024:
            return None
        keys = self._load()
        try:
            decoded = jwt.decode(token, KeySet(keys), algorithms=["RS384", "ES384"])
        except (JoseError, ValueError, TypeError):
            return None
        return dict(decoded.claims)
