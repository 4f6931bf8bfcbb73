"""The command line every service shares: ``serve``, ``worker``, ``migrate``, ``revision``."""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Callable

import uvicorn
from fastapi import FastAPI

from relearn.shared.db import make_engine
from relearn.shared.logging import configure_logging
from relearn.shared.migrations import autogenerate, check, upgrade
from relearn.shared.settings import ServiceSettings
from relearn.shared.workers import WorkerFactory, Workers, run_until_signalled


def service_main(
    package: str,
    settings_factory: Callable[[], ServiceSettings],
    app_factory: Callable[[], FastAPI],
    consumers: WorkerFactory | None = None,
    argv: list[str] | None = None,
) -> None:
    parser = argparse.ArgumentParser(prog=package)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("serve", help="run the HTTP API (and, with RUN_WORKERS, the relay and consumers)")
    sub.add_parser("worker", help="run the outbox relay and event consumers only")
    sub.add_parser("migrate", help="apply database migrations up to head")
    sub.add_parser("check-migrations", help="fail if the models differ from what the migrations build")
    rev = sub.add_parser("revision", help="autogenerate a migration from the models")
    rev.add_argument("-m", "--message", required=True)
    args = parser.parse_args(argv)

    settings = settings_factory()
    configure_logging(settings.service_name, settings.log_level)
    if args.command == "migrate":
        upgrade(package, settings.resolved_database_url())
    elif args.command == "check-migrations":
        importlib.import_module(f"{package}.tables")  # the service's tables, and only those
        check(package, settings.resolved_database_url())
    elif args.command == "revision":
        autogenerate(package, args.message)
    elif args.command == "worker":
        run_until_signalled(Workers(make_engine(settings.resolved_database_url()), settings, consumers))
    else:
        uvicorn.run(app_factory(), host=settings.host, port=settings.port, log_config=None)
