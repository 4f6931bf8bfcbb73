"""Building and running a service: the public surface of ``relearn.shared`` for a service's wiring.

``main.py`` builds its app with :func:`create_service_app` (FHIR routes from :func:`fhir_api`), ``cli.py``
is :func:`service_main`, ``config.py`` subclasses :class:`ServiceSettings`; routes take ``SessionDep``
(one transaction per request, committed at the boundary), background code uses :func:`transaction`.
The other public modules: :mod:`relearn.shared.fhir`, :mod:`relearn.shared.auth`,
:mod:`relearn.shared.events`, and for Alembic scripts :mod:`relearn.shared.migrations` and
:mod:`relearn.shared.plumbing_schema` (docs/development.md, "Shared's public surface").
"""

from __future__ import annotations

from relearn.shared.app import create_service_app, fhir_api, fhir_store
from relearn.shared.audit import audit_in
from relearn.shared.audit_context import touch_patients
from relearn.shared.cli import service_main
from relearn.shared.db import make_engine, transaction
from relearn.shared.deadline import TIMEOUT_HEADER, CancelOnDisconnect
from relearn.shared.deps import EngineDep, SessionDep
from relearn.shared.guard import RequestGuard, settings_limits
from relearn.shared.logging import configure_logging
from relearn.shared.openapi import Documents, Included, install_error_docs, install_merged_docs
from relearn.shared.provenance import RequestAgent, client_provenance, request_agent
from relearn.shared.settings import ServiceSettings, default_var_dir
from relearn.shared.workers import BackgroundWorker, PeriodicWorker

__all__ = [
    "TIMEOUT_HEADER",
    "BackgroundWorker",
    "CancelOnDisconnect",
    "Documents",
    "EngineDep",
    "Included",
    "PeriodicWorker",
    "RequestAgent",
    "RequestGuard",
    "ServiceSettings",
    "SessionDep",
    "audit_in",
    "client_provenance",
    "configure_logging",
    "create_service_app",
    "default_var_dir",
    "fhir_api",
    "fhir_store",
    "install_error_docs",
    "install_merged_docs",
    "make_engine",
    "request_agent",
    "service_main",
    "settings_limits",
    "touch_patients",
    "transaction",
]
