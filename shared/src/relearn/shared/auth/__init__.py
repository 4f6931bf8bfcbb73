"""OAuth2 bearer tokens with SMART scopes."""
