"""The development token issuer (OAuth2 client credentials, SMART scopes) for ``make run``, tests and
the ``dev`` deployments; never part of a service image. See :mod:`relearn.dev_issuer.issuer`."""

from relearn.dev_issuer.issuer import (
    ClientRegistry,
    DevIssuer,
    DevIssuerSettings,
    IssuedToken,
    RegisteredClient,
    TokenRequestError,
    default_clients_file,
    dev_token_router,
    hash_secret,
)

__all__ = [
    "ClientRegistry",
    "DevIssuer",
    "DevIssuerSettings",
    "IssuedToken",
    "RegisteredClient",
    "TokenRequestError",
    "default_clients_file",
    "dev_token_router",
    "hash_secret",
]
