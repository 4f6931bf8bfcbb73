"""What every service gets from create_service_app: probes, request ids, JSON logs, settings by prefix."""

from __future__ import annotations

import json
import logging
import threading
import time
from pathlib import Path

import httpx
import pytest
import uvicorn
from fastapi import APIRouter, FastAPI, WebSocket
from fastapi.testclient import TestClient

from relearn.devtools.broker import TansuBroker, free_port
from relearn.evaluation.config import Settings as EvaluationSettings
from relearn.shared.migrations import upgrade
from relearn.shared.service import create_service_app, make_engine


def _app(tmp_path: Path, bootstrap: str) -> TestClient:
    return TestClient(_service(tmp_path, bootstrap))


def _service(tmp_path: Path, bootstrap: str) -> FastAPI:
    url = f"sqlite:///{tmp_path / 'svc.db'}"
    upgrade("relearn.evaluation", url)
    settings = EvaluationSettings(
        database_url=url, kafka_bootstrap=bootstrap, run_workers=False, auth_jwks=str(tmp_path / "none.json")
    )
    router = APIRouter()

    @router.get("/hello")
    def hello() -> dict[str, str]:
        logging.getLogger("relearn.test").info("saying hello", extra={"who": "world"})
        return {"hello": "world"}

    @router.get("/boom")
    def boom() -> dict[str, str]:
        raise RuntimeError("a bug")

    @router.websocket("/echo")
    async def echo(websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.send_text(await websocket.receive_text())
        await websocket.close()

    return create_service_app(settings, title="t", description="t", routers=[router], engine=make_engine(url))


def test_probes_answer_without_a_token(tmp_path: Path, broker: TansuBroker) -> None:
    with _app(tmp_path, broker.bootstrap) as client:
        assert client.get("/healthz").status_code == 200
        ready = client.get("/readyz")
        assert ready.status_code == 200
        assert ready.json()["checks"] == {"database": "ok", "broker": "ok"}
        # The outbox is detail (waiting and dead-lettered events), also as Prometheus gauges.
        assert ready.json()["outbox"] == {"pending": 0, "deadLettered": 0}
        metrics = client.get("/metrics")
        assert metrics.status_code == 200
        assert "relearn_outbox_dead_letters 0" in metrics.text.splitlines()


def test_readiness_fails_when_the_broker_is_unreachable(tmp_path: Path) -> None:
    with _app(tmp_path, f"127.0.0.1:{free_port()}") as client:
        ready = client.get("/readyz")
        assert ready.status_code == 503
        assert ready.json()["checks"]["broker"] == "unreachable"
        assert client.get("/healthz").status_code == 200  # alive, just not ready


def test_request_id_is_echoed_and_logged_as_json(
    tmp_path: Path, broker: TansuBroker, capfd: pytest.CaptureFixture[str]
) -> None:
    with _app(tmp_path, broker.bootstrap) as client:
        resp = client.get("/hello", headers={"X-Request-ID": "req-123"})
        assert resp.headers["X-Request-ID"] == "req-123"
        assert client.get("/hello").headers["X-Request-ID"]  # generated when absent
    lines = [json.loads(line) for line in capfd.readouterr().err.splitlines() if line.startswith("{")]
    hello = [line for line in lines if line.get("event") == "saying hello"]
    assert hello and hello[0]["request_id"] == "req-123"
    assert hello[0]["who"] == "world" and hello[0]["service"] == "evaluation"


def test_errors_carry_the_request_id_and_sockets_pass_through(tmp_path: Path, broker: TansuBroker) -> None:
    with _app(tmp_path, broker.bootstrap) as client:
        missing = client.get("/nowhere", headers={"X-Request-ID": "req-404"})
        assert missing.status_code == 404
        assert missing.headers.get_list("X-Request-ID") == ["req-404"]
        assert missing.json()["resourceType"] == "OperationOutcome"
        with client.websocket_connect("/echo", headers={"X-Request-ID": "req-ws"}) as ws:
            ws.send_text("ping")
            assert ws.receive_text() == "ping"


def test_an_unhandled_error_is_a_500_outcome_and_keeps_the_connection(
    tmp_path: Path, broker: TansuBroker
) -> None:
    """Starlette's own 500 re-raises and uvicorn then closes the connection: a client reusing it (the front
    door's pool) saw its next, unrelated request fail. Here the 500 is answered and the connection kept."""
    server = uvicorn.Server(
        uvicorn.Config(
            _service(tmp_path, broker.bootstrap), host="127.0.0.1", port=free_port(), log_level="warning"
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while not server.started:
            assert time.monotonic() < deadline, "the test server did not start"
            time.sleep(0.05)
        base = f"http://127.0.0.1:{server.config.port}"
        with httpx.Client(base_url=base, limits=httpx.Limits(max_connections=1)) as client:
            failed = client.get("/boom", headers={"X-Request-ID": "req-500"})
            assert failed.status_code == 500
            assert failed.json()["issue"][0]["diagnostics"] == "Internal server error"
            assert failed.headers["X-Request-ID"] == "req-500"
            after = client.get("/hello")
            assert after.status_code == 200

            def local_port(r: httpx.Response) -> int:
                return int(r.extensions["network_stream"].get_extra_info("client_addr")[1])

            assert local_port(after) == local_port(failed)  # the same connection served both
    finally:
        server.should_exit = True
        thread.join(10)


def test_settings_are_read_with_the_service_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EVALUATION_DATABASE_URL", "postgresql+psycopg://x@db/evaluation")
    monkeypatch.setenv("PLAN_DATABASE_URL", "postgresql+psycopg://x@db/plan")
    assert EvaluationSettings().resolved_database_url() == "postgresql+psycopg://x@db/evaluation"
