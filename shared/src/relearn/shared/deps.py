"""Request-scoped dependencies: the service's engine and a session that commits at the boundary."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.engine import Engine
from sqlmodel import Session

from relearn.shared import audit, idempotency
from relearn.shared.db import transaction


def get_engine(request: Request) -> Engine:
    engine: Engine = request.app.state.engine
    return engine


def get_session(request: Request, engine: Annotated[Engine, Depends(get_engine)]) -> Iterator[Session]:
    # One transaction per request, committed before the response is sent (scope="function").
    try:
        with transaction(engine) as session:
            # A POST with an Idempotency-Key: its stored answer is replayed, or the key is taken here.
            idempotency.claim(session, request)
            yield session
            # Reached only when the route raised nothing: its audit event commits with its work.
            audit.stage_in_request(session, request.scope)
    except BaseException:
        audit.unstage()
        raise


idempotency.request_session_dependency(get_session)

EngineDep = Annotated[Engine, Depends(get_engine)]
SessionDep = Annotated[Session, Depends(get_session, scope="function")]
