"""The four services in this process, on one real Tansu broker and real PostgreSQL, for the scenario suite.

Module-scoped, on a broker of its own: every scenario is a fresh patient on the same platform (patients are
independent). Calls go
through the services' public HTTP APIs with development tokens (the clinic's for the clinic, the hub's
``device`` token for ingest); :class:`~relearn.devtools.inprocess.Quiescence` tells when every event in flight
has been handled, so no step sleeps.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from relearn.device_gateway.config import Settings as GatewaySettings
from relearn.device_gateway.main import create_app as create_gateway
from relearn.devtools.apps import make_issuer, service_app
from relearn.devtools.broker import TansuBroker
from relearn.devtools.inprocess import InProcessApi, Quiescence, event_consumers, in_process_urls
from relearn.evaluation.config import Settings as EvaluationSettings
from relearn.evaluation.main import create_app as create_evaluation
from relearn.plan.config import Settings as PlanSettings
from relearn.plan.main import create_app as create_plan
from relearn.sessions.config import Settings as SessionsSettings
from relearn.sessions.main import create_app as create_sessions
from relearn.shared.service import ServiceSettings

from .clinic import Clinic

HOSTS = {
    "evaluation": "evaluation.test",
    "plan": "plan.test",
    "sessions": "sessions.test",
    "device_gateway": "device-gateway.test",
}

# The sessions of a scenario are dated weeks ago, so their wait for stream metrics (30 min after the
# session) has always ended: the plan's deadline sweep would judge them at a moment no test controls. The
# sweep has its own unit tests; here a session with streams is judged once the gateway reports its metrics
# complete.
OVERRIDES: dict[str, dict[str, Any]] = {"plan": {"evidence_sweep_interval_s": 3600}}


@pytest.fixture(scope="module")
def scenario_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TansuBroker]:
    """A broker of the suite's own: its consumer groups (``plan``, ``device-gateway-metrics`` ...) share no
    members or offsets with groups of the same names that earlier tests left on the session's broker."""
    b = TansuBroker(log_dir=tmp_path_factory.mktemp("scenario-broker"))
    b.start()
    try:
        yield b
    finally:
        b.stop()


@pytest.fixture(scope="module")
def clinic(
    scenario_broker: TansuBroker, pg_database: Callable[[str], str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Clinic]:
    broker = scenario_broker
    issuer = make_issuer(tmp_path_factory.mktemp("keys"))
    jwks = issuer.publish()
    specs: dict[str, tuple[str, type[ServiceSettings], Callable[..., FastAPI]]] = {
        "evaluation": ("relearn.evaluation", EvaluationSettings, create_evaluation),
        "plan": ("relearn.plan", PlanSettings, create_plan),
        "sessions": ("relearn.sessions", SessionsSettings, create_sessions),
        "device_gateway": ("relearn.device_gateway", GatewaySettings, create_gateway),
    }
    apps = {
        role: service_app(
            package,
            settings,
            create,
            database_url=pg_database(f"scenarios_{role}"),
            bootstrap=broker.bootstrap,
            jwks=jwks,
            **OVERRIDES.get(role, {}),
        )
        for role, (package, settings, create) in specs.items()
    }
    with ExitStack() as stack:
        clients = {HOSTS[role]: stack.enter_context(TestClient(app)) for role, app in apps.items()}
        for app in apps.values():
            for consumer in event_consumers(app):
                assert consumer.wait_until_assigned(60), f"consumer {consumer.group_id} never joined"
        quiet = Quiescence(broker.bootstrap, apps.values())
        stack.callback(quiet.close)
        api = InProcessApi(in_process_urls(HOSTS), clients, issuer)
        stack.callback(api.close)
        quiet.wait(timeout_s=120, what="the consumers to catch up with earlier tests' events")
        yield Clinic(api, quiet, broker.bootstrap)
