"""Fixtures for the whole-platform tests: the platform as ``make run`` starts it, but on PostgreSQL.

``running_platform`` (session-scoped) starts the Tansu broker, migrates and starts the four services
and the front door as separate processes on free ports (the same ``Platform`` code ``make run`` uses),
each service on its own fresh PostgreSQL database; it stops everything and drops the databases at the
end. Logs go to ``<tmp>/var/logs/<service>.log``. Tests reach it through ``running_platform.settings``
(``fhir_base_url``, ``issuer_url``) and ``running_platform.urls()`` (each service's REST base).

``closing_notes`` collects lines printed in the run's closing summary.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from relearn.devtools.pg import ScratchDatabases
from relearn.devtools.platform import Platform, PlatformSettings

_NOTES = pytest.StashKey[list[str]]()


@pytest.fixture(scope="session")
def running_platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    """The whole platform (own broker, four services, front door) in separate processes, on PostgreSQL."""
    databases = ScratchDatabases()
    try:
        services = [spec.name.replace("-", "_") for spec in PlatformSettings().services()]
        settings = PlatformSettings.on_free_ports(
            tmp_path_factory.mktemp("platform") / "var", databases.create_per_service(services)
        )
        platform = Platform(settings)
        try:
            platform.start(ready_timeout_s=120)
            yield platform
        finally:
            platform.stop()
    finally:
        databases.drop_all()


@pytest.fixture(scope="session")
def closing_notes(request: pytest.FixtureRequest) -> list[str]:
    """Lines a test wants in the run's closing summary (e.g. the journey's wall time and slowest step)."""
    return request.config.stash.setdefault(_NOTES, [])


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    notes = config.stash.get(_NOTES, [])
    if notes:
        terminalreporter.section("closing notes")
        for note in notes:
            terminalreporter.write_line(note)
