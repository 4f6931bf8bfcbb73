"""The authorization service on real HTTP (uvicorn in a thread) and PostgreSQL, with a directory of test
clients (their private keys kept here to sign assertions), development users, and a real HTTP server
publishing one client's JWKS (jwks_uri) with Cache-Control."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from joserfc import jwt
from joserfc.jwk import ECKey, Key, RSAKey

from relearn.authorization.config import Settings
from relearn.authorization.domain.directory import hash_secret
from relearn.authorization.main import create_app
from relearn.authorization.service.keys import SigningKeys
from relearn.devtools.broker import TansuBroker, free_port
from relearn.shared.migrations import upgrade
from relearn.shared.service import transaction

FHIR_BASE = "http://127.0.0.1:8080/fhir"
APP_REDIRECT = "https://app.example/callback"


def ec_key(kid: str) -> ECKey:
    key = ECKey.generate_key("P-384")
    key.ensure_kid()
    return ECKey.import_key({**key.as_dict(private=True), "kid": kid})


def rsa_key(kid: str) -> RSAKey:
    key = RSAKey.generate_key(2048)
    return RSAKey.import_key({**key.as_dict(private=True), "kid": kid})


def public(key: Key) -> dict[str, Any]:
    return {**key.as_dict(private=False), "kid": key.kid}


@dataclass
class JwksServer:
    """Serves ``keys`` at /jwks.json with ``Cache-Control: max-age=<max_age>``; counts fetches."""

    keys: list[dict[str, Any]] = field(default_factory=list)
    max_age: int = 3600
    fetches: int = 0
    server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        host, port = self.server.server_address[:2]
        return f"http://{host!s}:{port}/jwks.json"

    def start(self) -> None:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                owner.fetches += 1
                body = json.dumps({"keys": owner.keys}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Cache-Control", f"public, max-age={owner.max_age}")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()


@dataclass
class Keys:
    """The test clients' private keys, by name."""

    backend: ECKey = field(default_factory=lambda: ec_key("backend-1"))
    backend_rsa: RSAKey = field(default_factory=lambda: rsa_key("backend-rsa-1"))
    ambiguous_a: ECKey = field(default_factory=lambda: ec_key("same"))
    ambiguous_b: ECKey = field(default_factory=lambda: ec_key("same"))
    hub_old: ECKey = field(default_factory=lambda: ec_key("hub-2025"))
    hub_new: ECKey = field(default_factory=lambda: ec_key("hub-2026"))
    revoked_hub: ECKey = field(default_factory=lambda: ec_key("hub-r"))
    by_url: ECKey = field(default_factory=lambda: ec_key("url-1"))
    by_url_next: ECKey = field(default_factory=lambda: ec_key("url-2"))
    ehr: ECKey = field(default_factory=lambda: ec_key("ehr-1"))
    resource_server: ECKey = field(default_factory=lambda: ec_key("rs-1"))
    stranger: ECKey = field(default_factory=lambda: ec_key("backend-1"))  # not registered anywhere


def directory(keys: Keys, jwks_url: str) -> dict[str, Any]:
    def jwks(*ks: Key) -> dict[str, Any]:
        return {"keys": [public(k) for k in ks]}

    return {
        "clients": [
            {"client_id": "backend", "jwks": jwks(keys.backend), "scope": "system/*.rs system/Observation.c"},
            {"client_id": "backend-rsa", "jwks": jwks(keys.backend_rsa), "scope": "system/Patient.read"},
            {
                "client_id": "ambiguous",
                "jwks": jwks(keys.ambiguous_a, keys.ambiguous_b),
                "scope": "system/*.rs",
            },
            {
                "client_id": "hub",
                "jwks": jwks(keys.hub_old, keys.hub_new),
                "scope": "system/Observation.write",
                "device_client": True,
                "devices": ["hub-7"],
            },
            {
                "client_id": "hub-multi",
                "jwks": jwks(keys.hub_old),
                "scope": "system/Observation.write",
                "device_client": True,
                "devices": ["hub-8", "hub-8-emg"],
            },
            {
                "client_id": "hub-revoked",
                "jwks": jwks(keys.revoked_hub),
                "scope": "system/Observation.write",
                "device_client": True,
                "devices": ["hub-9"],
            },
            {"client_id": "by-url", "jwks_uri": jwks_url, "scope": "system/*.read"},
            {"client_id": "ehr", "jwks": jwks(keys.ehr), "scope": "system/*.rs", "launch_issuer": True},
            {"client_id": "resource-server", "jwks": jwks(keys.resource_server), "introspection": True},
            {"client_id": "dev-secret", "client_secret": "s3cret-dev", "scope": "system/*.* patient/*.*"},
            {
                "client_id": "app",
                "name": "Biofeedback app",
                "redirect_uris": [APP_REDIRECT],
                "scope": "launch launch/patient openid fhirUser offline_access online_access "
                "patient/*.rs user/*.rs",
            },
        ]
    }


USERS = {
    "users": [
        {"username": "pat", "password": "pat-pw", "fhirUser": "Patient/p1", "patient": "p1"},
        {"username": "doc", "password": "doc-pw", "fhirUser": "Practitioner/d1"},
    ]
}


@dataclass
class Running:
    url: str
    app: Any
    keys: Keys
    jwks_server: JwksServer
    settings: Settings
    public = staticmethod(public)

    @property
    def token_url(self) -> str:
        return self.settings.token_url

    def assertion(
        self,
        client_id: str,
        key: Key,
        *,
        alg: str | None = None,
        aud: str | None = None,
        exp_in: float = 240,
        jti: str | None = None,
        iss: str | None = None,
        kid: str | None = None,
    ) -> str:
        alg = alg or ("ES384" if key.key_type == "EC" else "RS384")
        now = time.time()
        claims = {
            "iss": iss or client_id,
            "sub": client_id,
            "aud": aud or self.token_url,
            "exp": int(now + exp_in),
            "iat": int(now),
            "jti": jti or uuid.uuid4().hex,
        }
        header = {"alg": alg, "kid": kid or key.kid, "typ": "JWT"}
        return jwt.encode(header, claims, key, algorithms=[alg])

    def post(self, path: str, data: dict[str, str], **kwargs: Any) -> httpx.Response:
        return httpx.post(f"{self.url}{path}", data=data, timeout=30, **kwargs)

    def token(self, client_id: str, key: Key, scope: str, **extra: Any) -> httpx.Response:
        form = {
            "grant_type": "client_credentials",
            "scope": scope,
            "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            "client_assertion": self.assertion(
                client_id, key, **{k: v for k, v in extra.items() if k != "form"}
            ),
            **extra.get("form", {}),
        }
        return self.post("/auth/token", form)

    def client_auth(self, client_id: str, key: Key) -> dict[str, str]:
        return {
            "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            "client_assertion": self.assertion(client_id, key),
        }

    def set_active(self, client_id: str, active: bool) -> None:
        """What an operator does (the directory file's ``active``), applied to the running service."""
        with transaction(self.app.state.engine) as session:
            self.app.state.authorization.set_client_active(session, client_id, active)


def _users_file(tmp: Path) -> Path:
    users = {
        "users": [
            {
                **{k: v for k, v in u.items() if k != "password"},
                "password_hash": hash_secret(str(u["password"])),
            }
            for u in USERS["users"]
        ]
    }
    path = tmp / "users.json"
    path.write_text(json.dumps(users), encoding="utf-8")
    return path


def serve(app: Any) -> tuple[str, Callable[[], None]]:
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        assert time.monotonic() < deadline, "the service did not start"
        time.sleep(0.05)

    def stop() -> None:
        server.should_exit = True
        thread.join(15)

    return f"http://127.0.0.1:{port}", stop


def start_service(
    pg_url: str, bootstrap: str, tmp: Path, keys: Keys, jwks_server: JwksServer, **overrides: Any
) -> tuple[Running, Callable[[], None]]:
    clients = tmp / "clients.json"
    clients.write_text(json.dumps(directory(keys, jwks_server.url)), encoding="utf-8")
    upgrade("relearn.authorization", pg_url)
    values: dict[str, Any] = {
        "database_url": pg_url,
        "kafka_bootstrap": bootstrap,
        "fhir_base_url": FHIR_BASE,
        "auth_issuer": "http://127.0.0.1:8080/auth",
        "signing_keys_file": tmp / "signing" / "keys.json",
        "clients_file": clients,
        "environment": "test",
        **overrides,
    }
    if values["environment"] != "production":
        values["users_file"] = _users_file(tmp)
    settings = Settings(**values)
    app = create_app(settings)
    url, stop = serve(app)
    return Running(url, app, keys, jwks_server, settings), stop


@pytest.fixture(scope="session")
def keys() -> Keys:
    return Keys()


@pytest.fixture(scope="session")
def jwks_server(keys: Keys) -> Iterator[JwksServer]:
    server = JwksServer(keys=[public(keys.by_url)])
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def service(
    broker: TansuBroker,
    pg_database: Callable[[str], str],
    tmp_path_factory: pytest.TempPathFactory,
    keys: Keys,
    jwks_server: JwksServer,
) -> Iterator[Running]:
    running, stop = start_service(
        pg_database("authorization"), broker.bootstrap, tmp_path_factory.mktemp("authz"), keys, jwks_server
    )
    try:
        yield running
    finally:
        stop()


@pytest.fixture(scope="module")
def production(
    broker: TansuBroker,
    pg_database: Callable[[str], str],
    tmp_path_factory: pytest.TempPathFactory,
    keys: Keys,
    jwks_server: JwksServer,
) -> Iterator[Running]:
    tmp = tmp_path_factory.mktemp("authz-prod")
    SigningKeys(tmp / "signing" / "keys.json", create=True).public_jwks()  # an operator provisions the key
    running, stop = start_service(
        pg_database("authorization_prod"),
        broker.bootstrap,
        tmp,
        keys,
        jwks_server,
        environment="production",
        allow_client_secrets=True,
    )
    try:
        yield running
    finally:
        stop()


@pytest.fixture(scope="module")
def replica(service: Running) -> Iterator[str]:
    """A second instance of the service on the same database and keys (another replica); its URL."""
    url, stop = serve(create_app(service.settings))
    try:
        yield url
    finally:
        stop()
