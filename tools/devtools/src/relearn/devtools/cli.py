"""``relearn-dev run | demo | broker | token`` — the developer's front door to the platform."""

from __future__ import annotations

import argparse
import contextlib
import sys
import threading
from pathlib import Path

import httpx

from relearn.devtools.broker import TansuBroker
from relearn.devtools.journey import main as demo
from relearn.devtools.platform import Platform, PlatformSettings, run


def _token(scope: str, patient: str | None, client_id: str, secret: str) -> int:
    settings = PlatformSettings()
    data = {"grant_type": "client_credentials", "scope": scope}
    if patient:
        data["patient"] = patient
    try:
        resp = httpx.post(f"{settings.issuer_url}/token", data=data, auth=(client_id, secret), timeout=10)
    except httpx.HTTPError as exc:
        print(
            f"cannot reach the development issuer at {settings.issuer_url} ({exc}); is `make run` up?",
            file=sys.stderr,
        )
        return 1
    if resp.status_code != 200:
        print(f"token request refused ({resp.status_code}): {resp.text}", file=sys.stderr)
        return 1
    print(resp.json()["access_token"])
    return 0


def _backend_token(scope: str) -> int:
    try:
        print(Platform().backend().token(scope))
    except (httpx.HTTPError, RuntimeError) as exc:
        print(f"token request failed: {exc}; is `make run` up?", file=sys.stderr)
        return 1
    return 0


def main() -> None:
    parser = argparse.ArgumentParser(prog="relearn-dev")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("run", help="the whole platform: broker, four services, front door")
    sub.add_parser("demo", help="one patient's course against a running platform, printed as a timeline")
    b = sub.add_parser("broker", help="only the Tansu broker")
    b.add_argument("--port", type=int, default=None)
    t = sub.add_parser("token", help="a development bearer token from a running platform")
    t.add_argument("--scope", default="system/*.read system/*.write")
    t.add_argument("--patient", default=None)
    t.add_argument("--client-id", default="relearn-dev")
    t.add_argument("--client-secret", default="dev-secret")
    t.add_argument(
        "--backend-services",
        action="store_true",
        help="ask with the relearn-backend-dev client's key (private_key_jwt) instead of a secret",
    )
    args = parser.parse_args()
    if args.command == "run":
        run()
    elif args.command == "demo":
        sys.exit(demo([]))
    elif args.command == "broker":
        broker = TansuBroker(log_dir=Path("var/broker"), port=args.port)
        broker.start()
        print(f"Tansu broker on {broker.bootstrap} (Ctrl-C stops it)", flush=True)
        try:
            with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C is how this command ends
                threading.Event().wait()
        finally:
            broker.stop()
    elif args.backend_services:
        sys.exit(_backend_token(args.scope))
    else:
        sys.exit(_token(args.scope, args.patient, args.client_id, args.client_secret))
