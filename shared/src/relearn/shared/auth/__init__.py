"""OAuth2 bearer tokens with SMART scopes.

The public surface for services: ``from relearn.shared.auth import PrincipalDep, Principal, ...``; the
submodules are the implementation. Names are resolved on first use (no import cycles through here).
The development token issuer is not here: it is ``relearn.dev_issuer`` (tools/dev-issuer), in no service.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from relearn.shared.lazy import lazy_exports

if TYPE_CHECKING:
    from relearn.shared.auth.dependency import PrincipalDep as PrincipalDep
    from relearn.shared.auth.dependency import TokenVerifier as TokenVerifier
    from relearn.shared.auth.dependency import require_scope as require_scope
    from relearn.shared.auth.keys import JwksError as JwksError
    from relearn.shared.auth.keys import load_jwks as load_jwks
    from relearn.shared.auth.keys import parse_jwks as parse_jwks
    from relearn.shared.auth.principal import Principal as Principal
    from relearn.shared.auth.principal import Restriction as Restriction
    from relearn.shared.auth.scopes import Access as Access
    from relearn.shared.auth.scopes import Permission as Permission
    from relearn.shared.auth.scopes import Scope as Scope
    from relearn.shared.auth.scopes import grant_scopes as grant_scopes
    from relearn.shared.auth.scopes import invalid_scopes as invalid_scopes
    from relearn.shared.auth.scopes import is_non_resource_scope as is_non_resource_scope
    from relearn.shared.auth.scopes import parse_scopes as parse_scopes
    from relearn.shared.auth.scopes import scope_covers as scope_covers
    from relearn.shared.auth.tokens import JwtVerifier as JwtVerifier
    from relearn.shared.auth.tokens import verifier_from_settings as verifier_from_settings
    from relearn.shared.auth.websocket import SocketCredentials as SocketCredentials
    from relearn.shared.auth.websocket import authenticate_websocket as authenticate_websocket
    from relearn.shared.auth.websocket import close_code as close_code
    from relearn.shared.auth.websocket import close_expired as close_expired
    from relearn.shared.auth.websocket import close_reason as close_reason
    from relearn.shared.auth.websocket import refuse as refuse
    from relearn.shared.auth.websocket import token_refresh as token_refresh
    from relearn.shared.auth.websocket import websocket_token as websocket_token

# name -> the submodule that defines it (imported on first use, so importing a submodule of this
# package never pulls in the rest: no import cycles through this module).
_EXPORTS: dict[str, str] = {
    "Principal": "principal",
    "Restriction": "principal",
    "PrincipalDep": "dependency",
    "TokenVerifier": "dependency",
    "require_scope": "dependency",
    "Scope": "scopes",
    "Access": "scopes",
    "parse_scopes": "scopes",
    "Permission": "scopes",
    "grant_scopes": "scopes",
    "invalid_scopes": "scopes",
    "is_non_resource_scope": "scopes",
    "scope_covers": "scopes",
    "JwtVerifier": "tokens",
    "verifier_from_settings": "tokens",
    "JwksError": "keys",
    "load_jwks": "keys",
    "parse_jwks": "keys",
    "SocketCredentials": "websocket",
    "authenticate_websocket": "websocket",
    "close_code": "websocket",
    "close_expired": "websocket",
    "close_reason": "websocket",
    "refuse": "websocket",
    "token_refresh": "websocket",
    "websocket_token": "websocket",
}
__all__ = sorted(_EXPORTS)


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
