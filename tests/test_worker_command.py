"""Production runs each service's consumers in its `worker` command (API pods have RUN_WORKERS=false): that
command must run exactly the consumers the app runs under `make run`, for every service that has any."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from relearn.devtools.apps import make_issuer
from relearn.shared.migrations import upgrade
from relearn.shared.workers import Workers

SERVICES = [
    ("relearn.evaluation", "EVALUATION_"),
    ("relearn.plan", "PLAN_"),
    ("relearn.sessions", "SESSIONS_"),
    ("relearn.device_gateway", "DEVICE_GATEWAY_"),
    ("relearn.subscriptions", "SUBSCRIPTIONS_"),
    ("relearn.audit", "AUDIT_"),
    ("relearn.reports", "REPORTS_"),
]


@pytest.mark.parametrize(("package", "prefix"), SERVICES)
def test_the_worker_command_runs_the_consumers_the_app_runs(
    package: str, prefix: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"sqlite:///{tmp_path / 'service.db'}"
    upgrade(package, url)
    env = {
        "DATABASE_URL": url,
        "KAFKA_BOOTSTRAP": "127.0.0.1:9",  # nothing is started: no broker needed
        "RUN_WORKERS": "false",
        "CREATE_TOPICS": "false",
        "AUTH_JWKS": str(make_issuer(tmp_path / "keys").publish()),
    }
    for name, value in env.items():
        monkeypatch.setenv(prefix + name, value)
    in_worker: list[list[str]] = []

    def capture(workers: Workers) -> None:
        in_worker.append(sorted(c.group_id for c in workers.consumers))

    monkeypatch.setattr("relearn.shared.cli.run_until_signalled", capture)
    monkeypatch.setattr(sys, "argv", [package, "worker"])
    importlib.import_module(f"{package}.cli").main()

    create_app = importlib.import_module(f"{package}.main").create_app
    settings = importlib.import_module(f"{package}.config").Settings()
    with TestClient(create_app(settings)) as client:
        in_app = sorted(c.group_id for c in client.app.state.workers.consumers)  # type: ignore[attr-defined]
    assert in_app, f"{package} declares consumers"
    assert in_worker == [in_app]


def test_serve_with_two_http_workers_answers_and_stops(tmp_path: Path) -> None:
    """``HTTP_WORKERS=2`` (docs/performance.md): the serving process starts two uvicorn workers on one port
    after running the app's start-up once, answers, and SIGTERM stops it and its workers."""
    import os
    import signal
    import subprocess
    import time

    import httpx

    from relearn.devtools.broker import free_port

    url = f"sqlite:///{tmp_path / 'service.db'}"
    upgrade("relearn.evaluation", url)
    port = free_port()
    env = dict(os.environ)
    env.update(
        {
            "EVALUATION_DATABASE_URL": url,
            "EVALUATION_PORT": str(port),
            "EVALUATION_HTTP_WORKERS": "2",
            "EVALUATION_KAFKA_BOOTSTRAP": "127.0.0.1:9",
            "EVALUATION_RUN_WORKERS": "false",
            "EVALUATION_CREATE_TOPICS": "false",
            "EVALUATION_AUTH_JWKS": str(make_issuer(tmp_path / "keys").publish()),
            "EVALUATION_LOG_LEVEL": "WARNING",
        }
    )
    script = str(Path(sys.executable).parent / "relearn-evaluation")
    proc = subprocess.Popen([script, "serve"], env=env, cwd=tmp_path, start_new_session=True)
    try:
        pids: set[int] = set()
        deadline = time.monotonic() + 120
        while len(pids) < 2 and time.monotonic() < deadline:  # both workers answer (new connections)
            try:
                resp = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5)
                if resp.status_code == 200:
                    children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()
                    pids = {int(c) for c in children}
            except httpx.HTTPError:
                pass
            assert proc.poll() is None, "serve exited"
            time.sleep(0.5)
        assert len(pids) >= 2, "two worker processes (and uvicorn's helpers) under the serving process"
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
    assert proc.returncode == 0
