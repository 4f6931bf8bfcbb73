"""``make fuzz`` in small: schemathesis (the pinned one, through ``uvx`` as ``make fuzz`` runs it; not a
dependency of any service) against the device gateway's Device and stream operations, statefully (a Device
created, then read, updated, its history read and deleted through the OpenAPI links; a stream bound then
read and closed). No server error, every answer as its OpenAPI document says (body schema and status
code). The whole platform, every operation and the front door are ``make fuzz``'s.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable

import pytest

from relearn.devtools.apps import make_issuer, service_app
from relearn.devtools.fuzz import fuzz_target
from relearn.devtools.served import Served

pytestmark = pytest.mark.skipif(shutil.which("uvx") is None, reason="needs uv's uvx (make sync installs uv)")


def test_a_short_stateful_schemathesis_run_finds_no_server_error_and_no_schema_violation(
    tmp_path_factory: pytest.TempPathFactory, pg_database: Callable[[str], str]
) -> None:
    import relearn.device_gateway.config as gw_config
    import relearn.device_gateway.main as gw_main

    issuer = make_issuer(tmp_path_factory.mktemp("keys"))
    app = service_app(
        "relearn.device_gateway",
        gw_config.Settings,
        gw_main.create_app,
        database_url=pg_database("device_gateway"),
        bootstrap="127.0.0.1:1",  # no broker needed: events stay in the outbox
        jwks=issuer.publish(),
        run_workers=False,
        create_topics=False,
    )
    served = Served(app)
    out = tmp_path_factory.mktemp("fuzz")
    try:
        totals = fuzz_target(
            "device-gateway",
            served.url,
            issuer.mint("relearn-dev", "system/*.read system/*.write"),
            out,
            examples=5,
            phases=("fuzzing", "stateful"),
            include_path_regex=r"^/(fhir/Device|streams)",
            max_time_s=40,
        )
    finally:
        served.stop()
    log = (out / "device-gateway.log").read_text(encoding="utf-8")
    assert totals["failures"] == 0, log[-6000:]
    assert totals["exit"] == 0, log[-6000:]
    assert totals["requests"] >= 15  # every selected operation at least once
    assert totals["stateful"] > 0, "the stateful phase followed no link"
