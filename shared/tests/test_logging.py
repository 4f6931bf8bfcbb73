"""Log lines as an operator reads them: JSON, and no bearer token from a WebSocket URL."""

from __future__ import annotations

import json
import logging

import pytest

from relearn.shared.logging import configure_logging


def test_a_token_in_a_logged_url_is_redacted(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("test-service")
    logging.getLogger("uvicorn.error").info(
        '%s - "WebSocket %s" [accepted]',
        "127.0.0.1:5000",
        "/biofeedback/ws?stream=s1&access_token=eyJhbGc.secret.sig",
    )
    line = json.loads(capsys.readouterr().err.strip().splitlines()[-1])
    assert "eyJhbGc" not in json.dumps(line)
    assert "/biofeedback/ws?stream=s1&access_token=***" in line["event"]
    assert line["service"] == "test-service"
