"""OAuth 2.0 errors (RFC 6749 §5.2): what every refusal of the issuer is."""

from __future__ import annotations


class OAuthError(Exception):
    """A request refused with an OAuth error code (``invalid_client`` is 401, the others 400)."""

    def __init__(self, error: str, description: str, status_code: int | None = None) -> None:
        super().__init__(f"{error}: {description}")
        self.error = error
        self.description = description
        self.status_code = status_code or (401 if error == "invalid_client" else 400)

    def to_json(self) -> dict[str, str]:
        return {"error": self.error, "error_description": self.description}


def invalid_client(description: str = "Client authentication failed") -> OAuthError:
    return OAuthError("invalid_client", description, 401)


def invalid_request(description: str) -> OAuthError:
    return OAuthError("invalid_request", description)


def invalid_grant(description: str) -> OAuthError:
    return OAuthError("invalid_grant", description)
