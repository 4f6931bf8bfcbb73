"""Every query on the authorization database."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, delete, select, update

from relearn.authorization.tables import (
    AssertionJti,
    AuthorizationCode,
    LaunchContext,
    OAuthClient,
    RefreshToken,
    RevokedToken,
)


def get_client(session: Session, client_id: str) -> OAuthClient | None:
    return session.get(OAuthClient, client_id)


def save_client(session: Session, client: OAuthClient) -> OAuthClient:
    """Insert or replace a client's registration."""
    merged = session.merge(client)
    session.flush()
    return merged


def all_clients(session: Session) -> list[OAuthClient]:
    return list(session.exec(select(OAuthClient).order_by(col(OAuthClient.client_id))))


def record_jti(session: Session, client_id: str, jti: str, expires_at: datetime) -> bool:
    """Remember an assertion's ``jti``; False when it was seen before (the primary key refuses it, on any
    replica, once the other transaction commits)."""
    if session.get(AssertionJti, (client_id, jti)) is not None:
        return False
    try:
        with session.begin_nested():
            session.add(AssertionJti(client_id=client_id, jti=jti, expires_at=expires_at))
    except IntegrityError:
        return False
    return True


def purge_expired(session: Session, now: datetime) -> None:
    """Drop replay entries, revocations, codes, refresh tokens and launches past their expiry."""
    for table in (AssertionJti, RevokedToken, AuthorizationCode, RefreshToken, LaunchContext):
        session.exec(delete(table).where(col(table.expires_at) < now))


def revoke_access_token(session: Session, jti: str, client_id: str, expires_at: datetime) -> None:
    if session.get(RevokedToken, jti) is None:
        session.add(RevokedToken(jti=jti, client_id=client_id, expires_at=expires_at))
        session.flush()


def is_revoked(session: Session, jti: str) -> bool:
    return session.get(RevokedToken, jti) is not None


def add_code(session: Session, code: AuthorizationCode) -> None:
    session.add(code)
    session.flush()


def take_code(session: Session, code_hash: str) -> AuthorizationCode | None:
    """The code's row, locked; the caller marks it used."""
    return session.exec(
        select(AuthorizationCode).where(AuthorizationCode.code_hash == code_hash).with_for_update()
    ).first()


def mark_code_used(session: Session, code: AuthorizationCode) -> None:
    code.used = True
    session.add(code)
    session.flush()


def add_refresh(session: Session, token: RefreshToken) -> None:
    session.add(token)
    session.flush()


def take_refresh(session: Session, token_hash: str) -> RefreshToken | None:
    return session.exec(
        select(RefreshToken).where(RefreshToken.token_hash == token_hash).with_for_update()
    ).first()


def mark_refresh_used(session: Session, token: RefreshToken) -> None:
    token.used = True
    session.add(token)
    session.flush()


def revoke_refresh_family(session: Session, family: str) -> None:
    session.exec(update(RefreshToken).where(col(RefreshToken.family) == family).values(revoked=True))


def revoke_client_refresh_tokens(session: Session, client_id: str) -> None:
    session.exec(update(RefreshToken).where(col(RefreshToken.client_id) == client_id).values(revoked=True))


def add_launch(session: Session, launch: LaunchContext) -> None:
    session.add(launch)
    session.flush()


def get_launch(session: Session, launch_id: str) -> LaunchContext | None:
    return session.get(LaunchContext, launch_id)
