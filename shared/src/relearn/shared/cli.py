"""The command line every service shares: ``serve``, ``worker``, ``migrate``, ``revision``."""

from __future__ import annotations

import argparse
import asyncio
import importlib
import os
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
    elif settings.http_workers <= 1:
        uvicorn.run(app_factory(), host=settings.host, port=settings.port, log_config=None)
    else:
        serve_workers(package, settings, app_factory, consumers)


def serve_workers(
    package: str,
    settings: ServiceSettings,
    app_factory: Callable[[], FastAPI],
    consumers: WorkerFactory | None,
) -> None:
    """``serve`` with ``http_workers`` HTTP processes on one port (performance, issue 16: one Python process
    uses at most one core; production runs one worker per core of the pod).

    This process prepares and supervises: it runs the app's start-up once (shipped CodeSystems and the
    like are stored before any worker starts, so the workers' own start-ups find them and write nothing),
    then, with ``run_workers``, the outbox relay and the consumers once for the pod, and uvicorn's
    supervisor, which starts the workers (each builds the app with ``run_workers`` off) and restarts a dead
    one. SIGTERM stops the workers, then the relay and consumers.
    """
    prefix = str(type(settings).model_config.get("env_prefix", ""))
    # The workers are new processes that read their settings from the environment (as every app does):
    # they serve HTTP only. This process writes the variable; nothing reads the environment but settings.
    os.environ[f"{prefix}RUN_WORKERS"] = "false"
    app = app_factory()
    asyncio.run(_start_up_once(app))
    background = Workers(make_engine(settings.resolved_database_url()), settings, consumers)
    if settings.run_workers:
        background.start()
    try:
        uvicorn.run(
            f"{package}.main:create_app",
            factory=True,
            host=settings.host,
            port=settings.port,
            workers=settings.http_workers,
            # A worker starting on a busy machine (a fresh interpreter importing the app) may not answer the
            # supervisor's ping within uvicorn's 5 s; it is then killed and started again, for ever.
            timeout_worker_healthcheck=60,
            log_config=None,
        )
    finally:
        background.stop()


async def _start_up_once(app: FastAPI) -> None:
    async with app.router.lifespan_context(app):
        pass
