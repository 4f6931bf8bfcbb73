"""``make run``: the whole platform on the embedded default, as separate processes.

Starts the Tansu broker, migrates and starts the eight services (a SQLite file each under ``var/``), the
authorization server among them, and the front door, waits until every one is ready, prints the URLs and
stops everything cleanly on Ctrl-C. Tests of the whole journey start the platform the same way.

Tokens: the authorization service (``services/authorization``) is the issuer, behind the front door at
``/auth``. Its client directory (``var/authorization/clients.json``, written at start) holds the
development issuer's secret clients (``relearn-dev``, ``ehr-demo``, ``device-gateway-dev``: development
mode accepts secrets) and two Backend Services clients with keys kept in ``var/authorization/``:
``relearn-backend-dev`` (every system scope) and ``clinic-hub-dev`` (a device client bound to
``Device/relearn-dev-hub``). :meth:`Platform.token` uses a secret, :meth:`Platform.backend` a key.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from pydantic_settings import BaseSettings, SettingsConfigDict

from relearn.dev_issuer import DevIssuer, default_clients_file
from relearn.devtools.broker import TansuBroker, free_port
from relearn.devtools.smart import BackendClient, load_or_create_key, public_jwks
from relearn.shared.migrations import upgrade


@dataclass(frozen=True)
class ServiceSpec:
    name: str  # folder and console-script suffix
    env_prefix: str
    port: int


class PlatformSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="RELEARN_DEV_")

    host: str = "127.0.0.1"
    front_door_port: int = 8080
    evaluation_port: int = 8081
    plan_port: int = 8082
    sessions_port: int = 8083
    device_gateway_port: int = 8084
    subscriptions_port: int = 8085
    authorization_port: int = 8086
    # The authorization service issues the tokens (off: the front door hosts the development issuer).
    authorization_server: bool = True
    audit_port: int = 8087
    reports_port: int = 8088
    broker_port: int | None = None  # a free port when unset
    var_dir: Path = Path("var")
    # Empty: a SQLite file per service. Otherwise a SQLAlchemy URL template with {service}.
    database_url_template: str = ""
    # Each service's relay and consumers in a process of their own (`relearn-<name> worker`, named
    # "<name>-worker") instead of inside `serve`, as in production; the reliability suite kills them apart.
    separate_workers: bool = False
    # HTTP worker processes per service (`<PREFIX>HTTP_WORKERS`; docs/performance.md). 1: on a laptop the
    # five services and the front door already share its cores.
    http_workers: int = 1

    @classmethod
    def on_free_ports(cls, var_dir: Path, database_url_template: str = "") -> PlatformSettings:
        """Settings for a platform beside any other (tests, benchmarks): every port free, its own var/."""
        return cls(
            front_door_port=free_port(),
            evaluation_port=free_port(),
            plan_port=free_port(),
            sessions_port=free_port(),
            device_gateway_port=free_port(),
            subscriptions_port=free_port(),
            authorization_port=free_port(),
            audit_port=free_port(),
            reports_port=free_port(),
            var_dir=var_dir,
            database_url_template=database_url_template,
        )

    def services(self) -> list[ServiceSpec]:
        return [
            ServiceSpec("evaluation", "EVALUATION_", self.evaluation_port),
            ServiceSpec("plan", "PLAN_", self.plan_port),
            ServiceSpec("sessions", "SESSIONS_", self.sessions_port),
            ServiceSpec("device-gateway", "DEVICE_GATEWAY_", self.device_gateway_port),
            ServiceSpec("subscriptions", "SUBSCRIPTIONS_", self.subscriptions_port),
            ServiceSpec("authorization", "AUTHORIZATION_", self.authorization_port),
            ServiceSpec("audit", "AUDIT_", self.audit_port),
            ServiceSpec("reports", "REPORTS_", self.reports_port),
        ]

    def fhir_services(self) -> list[ServiceSpec]:
        """The services behind the FHIR base URL and the REST routes (the front door's upstreams)."""
        return [spec for spec in self.services() if spec.name != "authorization"]

    @property
    def fhir_base_url(self) -> str:
        return f"http://{self.host}:{self.front_door_port}/fhir"

    @property
    def issuer_url(self) -> str:
        return f"http://{self.host}:{self.front_door_port}/auth"

    @property
    def token_url(self) -> str:
        return f"{self.issuer_url}/token"


BACKEND_CLIENT = "relearn-backend-dev"
DEVICE_CLIENT = "clinic-hub-dev"
DEV_HUB = "relearn-dev-hub"
# Development users of the login page (App Launch): user name, password, fhirUser, patient.
DEV_USERS = (
    ("patient", "patient-dev", "Patient/dev-patient", "dev-patient"),
    ("therapist", "therapist-dev", "Practitioner/dev-therapist", None),
)
DEV_APP_REDIRECT = "http://127.0.0.1:8000/callback"


def _dev_password_hash(password: str) -> str:
    salt = os.urandom(16)
    digest = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, 10_000)
    return f"pbkdf2_sha256$10000${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"


@dataclass
class Platform:
    """The platform's processes. ``broker``: one to use instead of a fresh memory-engine Tansu (started
    here if it is not running); ``extra_env``: more settings for every service (``{"OUTBOX_...": ...}``
    without the service's prefix)."""

    settings: PlatformSettings = field(default_factory=PlatformSettings)
    broker: TansuBroker | None = None
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    extra_env: dict[str, str] = field(default_factory=dict)
    _commands: dict[str, tuple[list[str], dict[str, str]]] = field(default_factory=dict)

    @property
    def var(self) -> Path:
        return self.settings.var_dir.resolve()

    def _script(self, name: str) -> str:
        return str(Path(sys.executable).parent / f"relearn-{name}")

    @property
    def authorization_dir(self) -> Path:
        return self.var / "authorization"

    def _write_directory(self) -> tuple[Path, Path]:
        """The authorization service's client and user directories for the local run (rewritten each start;
        the Backend Services clients' private keys stay in var/authorization/)."""
        folder = self.authorization_dir
        folder.mkdir(parents=True, exist_ok=True)
        clients = json.loads(default_clients_file().read_text(encoding="utf-8"))["clients"]
        backend = load_or_create_key(folder / f"{BACKEND_CLIENT}.key.json", f"{BACKEND_CLIENT}-1")
        hub = load_or_create_key(folder / f"{DEVICE_CLIENT}.key.json", f"{DEVICE_CLIENT}-1")
        clients += [
            {
                "client_id": BACKEND_CLIENT,
                "description": "A Backend Services client (private_key_jwt) with every system scope.",
                "jwks": public_jwks(backend),
                "scope": "system/*.*",
                "introspection": True,
                "launch_issuer": True,
            },
            {
                "client_id": DEVICE_CLIENT,
                "description": "The clinic hub as a Backend Services device client (its own key).",
                "jwks": public_jwks(hub),
                "scope": "system/Observation.write",
                "device_client": True,
                "devices": [DEV_HUB],
            },
            {
                "client_id": "relearn-dev-app",
                "description": "A public SMART app (PKCE) for trying App Launch locally.",
                "redirect_uris": [DEV_APP_REDIRECT],
                "scope": "launch launch/patient openid fhirUser offline_access online_access "
                "patient/*.rs user/*.rs",
            },
        ]
        clients_file = folder / "clients.json"
        clients_file.write_text(json.dumps({"clients": clients}, indent=2), encoding="utf-8")
        users = [
            {"username": u, "password_hash": _dev_password_hash(pw), "fhirUser": who, "patient": patient}
            for u, pw, who, patient in DEV_USERS
        ]
        users_file = folder / "users.json"
        users_file.write_text(json.dumps({"users": users}, indent=2), encoding="utf-8")
        return clients_file, users_file

    def backend(self, client_id: str = BACKEND_CLIENT) -> BackendClient:
        """A Backend Services client of the local run (``relearn-backend-dev`` or ``clinic-hub-dev``), with
        its private key, asking the front door's token endpoint."""
        key = load_or_create_key(self.authorization_dir / f"{client_id}.key.json", f"{client_id}-1")
        return BackendClient(client_id, key, self.settings.token_url)

    def _service_env(self, spec: ServiceSpec, jwks: Path) -> dict[str, str]:
        s = self.settings
        assert self.broker is not None
        p = spec.env_prefix
        env = dict(os.environ)
        env.update({f"{p}{k}": v for k, v in self.extra_env.items()})
        env.update(
            {
                f"{p}HOST": s.host,
                f"{p}PORT": str(spec.port),
                f"{p}KAFKA_BOOTSTRAP": self.broker.bootstrap,
                f"{p}AUTH_JWKS": self._jwks_source(jwks),
                f"{p}AUTH_ISSUER": s.issuer_url,
                f"{p}FHIR_BASE_URL": s.fhir_base_url,
                f"{p}RUN_WORKERS": "false" if s.separate_workers else "true",
                f"{p}HTTP_WORKERS": str(s.http_workers),
            }
        )
        if spec.name == "authorization":
            clients_file, users_file = self._write_directory()
            env[f"{p}SIGNING_KEYS_FILE"] = str(self.authorization_dir / "keys.json")
            env[f"{p}CLIENTS_FILE"] = str(clients_file)
            env[f"{p}USERS_FILE"] = str(users_file)
        if spec.name == "reports":
            # It reads each course through the front door with its own client credentials (read-only).
            env[f"{p}PLATFORM_URL"] = f"http://{s.host}:{s.front_door_port}"
            env[f"{p}TOKEN_URL"] = f"{s.issuer_url}/token"
        if spec.name == "subscriptions":
            # Websocket subscribers connect through the front door.
            env[f"{p}WEBSOCKET_URL"] = f"ws://{s.host}:{s.front_door_port}/subscriptions/ws"
            # full-resource payloads: the focus is read through the front door with the dev issuer's
            # read-only demo client (its token from <issuer>/token, the default).
            env.setdefault(f"{p}FOCUS_CLIENT_ID", "ehr-demo")
            env.setdefault(f"{p}FOCUS_CLIENT_SECRET", "ehr-demo-secret")
        if s.database_url_template:
            env[f"{p}DATABASE_URL"] = s.database_url_template.format(service=spec.name.replace("-", "_"))
        else:
            env[f"{p}DATABASE_URL"] = f"sqlite:///{self.var / (spec.name + '.db')}"
        return env

    def _jwks_source(self, dev_jwks: Path) -> str:
        """What services verify tokens against: the authorization service's JWKS URL (or the development
        issuer's file)."""
        s = self.settings
        if s.authorization_server:
            return f"http://{s.host}:{s.authorization_port}/auth/jwks.json"
        return str(dev_jwks)

    def _front_door_env(self) -> dict[str, str]:
        s = self.settings
        env = dict(os.environ)
        upstreams = {spec.name: f"http://{s.host}:{spec.port}" for spec in s.fhir_services()}
        env.update(
            {
                "FRONT_DOOR_HOST": s.host,
                "FRONT_DOOR_PORT": str(s.front_door_port),
                "FRONT_DOOR_FHIR_BASE_URL": s.fhir_base_url,
                "FRONT_DOOR_UPSTREAMS": json.dumps(upstreams),
                # The front door's defaults plus the subscriptions service's binding socket.
                "FRONT_DOOR_WEBSOCKET_ROUTES": json.dumps(
                    {
                        "/ingest/ws": "/ingest",
                        "/biofeedback/ws": "/streams",
                        "/subscriptions/ws": "/subscriptions",
                    }
                ),
                "FRONT_DOOR_DEV_ISSUER_URL": s.issuer_url,
                "FRONT_DOOR_DEV_KEY_DIR": str(self.var / "dev-issuer"),
            }
        )
        if s.authorization_server:
            env["FRONT_DOOR_AUTHORIZATION_URL"] = f"http://{s.host}:{s.authorization_port}"
            env["FRONT_DOOR_DEV_ISSUER_ENABLED"] = "false"
        return env

    def _spawn(self, name: str, args: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
        self._commands[name] = (args, env)
        logs = self.var / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        out = open(logs / f"{name}.log", "ab")  # noqa: SIM115 - the child owns it for its lifetime
        # A new process group so Ctrl-C reaches us first and we stop children in order.
        return subprocess.Popen(args, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)

    def start(self, *, ready_timeout_s: float = 90.0) -> None:
        self.var.mkdir(parents=True, exist_ok=True)
        if self.broker is None:
            self.broker = TansuBroker(log_dir=self.var / "broker", port=self.settings.broker_port)
        self.broker.start()
        jwks = DevIssuer.ensure_keys(self.var / "dev-issuer")
        specs = (
            self.settings.services() if self.settings.authorization_server else self.settings.fhir_services()
        )
        for spec in specs:
            env = self._service_env(spec, jwks)
            # In-process: the same Alembic scripts `relearn-<name> migrate` runs, without a
            # Python start-up per service.
            upgrade(f"relearn.{spec.name.replace('-', '_')}", env[f"{spec.env_prefix}DATABASE_URL"])
            self.processes[spec.name] = self._spawn(spec.name, [self._script(spec.name), "serve"], env)
            if self.settings.separate_workers:
                self.processes[f"{spec.name}-worker"] = self._spawn(
                    f"{spec.name}-worker", [self._script(spec.name), "worker"], env
                )
        self.processes["front-door"] = self._spawn(
            "front-door", [self._script("front-door"), "serve"], self._front_door_env()
        )
        self.wait_ready(ready_timeout_s)

    def token(
        self,
        scope: str = "system/*.read system/*.write",
        *,
        patient: str | None = None,
        device: str | None = None,
        client: tuple[str, str] = ("relearn-dev", "dev-secret"),
    ) -> str:
        """A bearer token for a development client with a secret (client credentials; development only).
        :meth:`backend` gets one the production way (a signed assertion)."""
        data = {"grant_type": "client_credentials", "scope": scope}
        if patient:
            data["patient"] = patient
        if device:
            data["device"] = device
        resp = httpx.post(f"{self.settings.issuer_url}/token", data=data, auth=client, timeout=30)
        resp.raise_for_status()
        return str(resp.json()["access_token"])

    def urls(self) -> dict[str, str]:
        s = self.settings
        specs = s.services() if s.authorization_server else s.fhir_services()
        out = {spec.name: f"http://{s.host}:{spec.port}" for spec in specs}
        out["front-door"] = f"http://{s.host}:{s.front_door_port}"
        return out

    def send_signal(self, name: str, sig: signal.Signals) -> None:
        """Send ``sig`` to one of the processes (``SIGKILL``, ``SIGSTOP``, ``SIGCONT``), as a fault would."""
        proc = self.processes[name]
        if proc.poll() is None:
            os.killpg(proc.pid, sig)  # its own session: the process and anything it started
            if sig == signal.SIGKILL:
                proc.wait()

    def respawn(self, name: str) -> None:
        """Start a process again with the command and settings it had (after a kill)."""
        proc = self.processes.get(name)
        if proc is not None and proc.poll() is None:
            raise RuntimeError(f"{name} is still running")
        args, env = self._commands[name]
        self.processes[name] = self._spawn(name, args, env)

    def wait_ready(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        pending = {n: u for n, u in self.urls().items() if n in self.processes}
        with httpx.Client(timeout=2.0) as client:
            while pending:
                for name, url in list(pending.items()):
                    proc = self.processes[name]
                    if proc.poll() is not None:
                        raise RuntimeError(
                            f"{name} exited with {proc.returncode}; see {self.var}/logs/{name}.log"
                        )
                    with contextlib.suppress(httpx.HTTPError):  # not listening yet
                        if client.get(f"{url}/readyz").status_code == 200:
                            del pending[name]
                if pending and time.monotonic() > deadline:
                    raise TimeoutError(f"not ready after {timeout_s}s: {sorted(pending)}")
                time.sleep(0.3)

    def stop(self) -> None:
        for name in reversed(list(self.processes)):
            proc = self.processes[name]
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGCONT)  # a stopped process cannot handle SIGTERM
                proc.send_signal(signal.SIGTERM)
        for proc in self.processes.values():
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.processes.clear()
        if self.broker is not None:
            self.broker.stop()


def run() -> None:
    # The services log JSON to var/logs; keep this terminal calm (kafka complains while the broker boots).
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("kafka").setLevel(logging.CRITICAL)
    platform = Platform()
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    try:
        platform.start()
        urls = platform.urls()
        s = platform.settings
        assert platform.broker is not None
        print("\nRelearn is running (embedded default: a SQLite file per service under var/)\n")
        print(f"  FHIR base URL       {s.fhir_base_url}   (try: curl {s.fhir_base_url}/metadata)")
        for name, url in urls.items():
            print(f"  {name:<19} {url}   docs: {url}/docs   ready: {url}/readyz")
        print(f"  broker (Tansu)      {platform.broker.bootstrap}")
        print(f"  logs                {platform.var}/logs/")
        print(
            "\n  A development token: make token   (narrower: make token SCOPE='patient/*.read' PATIENT=<id>)"
        )
        print("  Stop with Ctrl-C.\n", flush=True)
        while not stop.wait(1.0):
            for name, proc in platform.processes.items():
                if proc.poll() is not None:
                    print(
                        f"{name} exited with {proc.returncode}; see {platform.var}/logs/{name}.log",
                        flush=True,
                    )
                    stop.set()
    finally:
        print("stopping ...", flush=True)
        platform.stop()
        print("stopped.", flush=True)
