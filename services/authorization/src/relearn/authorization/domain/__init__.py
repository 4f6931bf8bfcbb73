"""The issuer's pure rules: scopes granted, client assertions, PKCE, the directory files."""
