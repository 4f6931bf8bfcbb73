"""What the deployment checks share: the repository's apps, their settings, the tools. Imported by the
tests in this folder (conftest.py puts the folder on sys.path)."""

from __future__ import annotations

import contextlib
import fnmatch
import functools
import importlib
import io
import os
import re
import shutil
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import yaml
from pydantic_settings import BaseSettings

REPO = Path(__file__).resolve().parents[2]
K8S = REPO / "deploy" / "k8s"
BAKE = (REPO / "docker-bake.hcl").read_text()


@dataclass(frozen=True)
class App:
    """One deployable app of the repository: a folder under services/ with a Dockerfile."""

    name: str  # folder and image name: "device-gateway"
    module: str  # import name: "device_gateway"
    prefix: str  # settings environment prefix: "DEVICE_GATEWAY_"
    has_database: bool

    @property
    def script(self) -> str:
        return f"relearn-{self.name}"

    @property
    def folder(self) -> Path:
        return REPO / "services" / self.name

    def settings_class(self) -> type[BaseSettings]:
        cls: object = importlib.import_module(f"relearn.{self.module}.config").Settings
        assert isinstance(cls, type) and issubclass(cls, BaseSettings)
        return cls

    def console_scripts(self) -> dict[str, str]:
        project = tomllib.loads((self.folder / "pyproject.toml").read_text())["project"]
        return dict(project.get("scripts", {}))


APPS: list[App] = [
    App("evaluation", "evaluation", "EVALUATION_", True),
    App("plan", "plan", "PLAN_", True),
    App("sessions", "sessions", "SESSIONS_", True),
    App("device-gateway", "device_gateway", "DEVICE_GATEWAY_", True),
    App("subscriptions", "subscriptions", "SUBSCRIPTIONS_", True),
    App("authorization", "authorization", "AUTHORIZATION_", True),
    App("audit", "audit", "AUDIT_", True),
    App("reports", "reports", "REPORTS_", True),
    App("front-door", "front_door", "FRONT_DOOR_", False),
]
APPS_BY_SCRIPT = {a.script: a for a in APPS}
SERVICES = [a for a in APPS if a.has_database]

# Front-door settings that matter only while its development token issuer is on.
DEV_ISSUER_FIELDS = {"dev_issuer_url", "dev_key_dir", "dev_clients_file"}
# Authorization-server settings of development only (refused or ignored in production).
AUTHORIZATION_DEV_FIELDS = {"users_file", "allow_client_secrets", "dev_secret_token_ttl_s"}


def settings_env_names(app: App, env: dict[str, str]) -> tuple[set[str], set[str]]:
    """(required names missing from ``env``, names in ``env`` with the app's prefix that no setting reads).

    Deployment config sets every setting explicitly (defaults are for ``make run`` on a laptop), except
    ``service_name`` (fixed per class) and the development issuer's settings while it is off.
    """
    fields = set(app.settings_class().model_fields)
    known = {app.prefix + f.upper() for f in fields}
    skip = {"service_name"}
    if app.name == "front-door" and env.get("FRONT_DOOR_DEV_ISSUER_ENABLED", "").lower() != "true":
        skip |= DEV_ISSUER_FIELDS
    if app.name == "authorization" and env.get("AUTHORIZATION_ENVIRONMENT") != "development":
        skip |= AUTHORIZATION_DEV_FIELDS
    required = {app.prefix + f.upper() for f in fields - skip}
    present = {k for k in env if k.startswith(app.prefix)}
    return required - present, present - known


def tool(name: str) -> str:
    """A command-line tool installed into the workspace environment by a dev dependency."""
    found = shutil.which(name, path=str(Path(sys.executable).parent)) or shutil.which(name)
    assert found, f"{name} is missing: run `make sync` (it is a dev dependency of the workspace)"
    return found


def load_all(text: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(text) if d]


def kustomize(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [tool("kubectl"), "kustomize", str(path)], capture_output=True, text=True, timeout=60
    )


def bake_targets() -> dict[str, dict[str, Any]]:
    """docker-bake.hcl's targets, one per row of its matrix: name -> {"args": {...}, "tags": [...]}, an empty
    ``APP_EXTRAS`` left out (as compose leaves it out)."""
    out: dict[str, dict[str, Any]] = {}
    for row in re.findall(r"^\s*\{ (name = .*?) \},?$", BAKE, flags=re.MULTILINE):
        item = dict(re.findall(r'(\w+) = "([^"]*)"', row))
        args = {"APP": item["app"], "APP_ENV_PREFIX": item["prefix"], "APP_PORT": item["port"]}
        if item["extras"]:
            args["APP_EXTRAS"] = item["extras"]
        out[item["name"]] = {"args": args, "tags": [f"relearn/{item['name']}:dev"]}
    assert 'tags = ["relearn/${item.name}:${TAG}"]' in BAKE, "the tag the rows stand for"
    fields = {"APP": "app", "APP_ENV_PREFIX": "prefix", "APP_PORT": "port", "APP_EXTRAS": "extras"}
    for arg, field in fields.items():
        row_field = re.search(rf"^\s*{arg}\s+= item\.{field}$", BAKE, flags=re.MULTILINE)
        assert row_field, f"{arg} comes from the row's {field}"
    return out


@functools.cache
def cli_commands(script: str) -> frozenset[str]:
    """The commands a console script accepts, read from its own ``--help`` (run in-process)."""
    (entry,) = entry_points(group="console_scripts", name=script)
    main = entry.load()
    out = io.StringIO()
    saved = sys.argv
    sys.argv = [script, "--help"]
    try:
        with contextlib.redirect_stdout(out), contextlib.suppress(SystemExit):
            main()
    finally:
        sys.argv = saved
    usage = re.search(r"\{([\w,-]+)\}", out.getvalue())
    assert usage, f"{script} --help shows no commands:\n{out.getvalue()}"
    return frozenset(usage.group(1).split(","))


def _glob_regex(pattern: str) -> re.Pattern[str]:
    parts = []
    for i, segment in enumerate(pattern.strip("/").split("/")):
        if segment == "**":
            parts.append("(?:[^/]+/)*" if i < len(pattern.strip("/").split("/")) - 1 else ".*")
            continue
        seg = fnmatch.translate(segment).removeprefix("(?s:").removesuffix(")\\Z")
        parts.append(seg.replace(".*", "[^/]*") + "/")
    return re.compile("".join(parts).removesuffix("/") + r"\Z")


def dockerignore_excludes(text: str, path: str) -> bool:
    """Whether Docker leaves ``path`` out of the build context: the last pattern matching the path or
    one of its parent folders decides, ``!`` re-includes (moby's patternmatcher semantics)."""
    candidates = [path] + ["/".join(path.split("/")[:i]) for i in range(1, path.count("/") + 1)]
    excluded = False
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        regex = _glob_regex(line.removeprefix("!"))
        if any(regex.match(c) for c in candidates):
            excluded = not negate
    return excluded


_INTERPOLATION = re.compile(r"\$\{(?P<name>\w+)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}")


class MissingVariable(KeyError):
    """A ``${VAR:?message}`` whose variable is unset: Compose refuses to start."""


def interpolate(value: str, env: dict[str, str]) -> str:
    """Compose's variable interpolation (``${VAR}``, ``${VAR:-default}``, ``${VAR:?error}``), enough
    for this repository's compose file."""

    def replace(m: re.Match[str]) -> str:
        name, op, arg = m.group("name"), m.group("op"), m.group("arg") or ""
        current = env.get(name)
        unset = current is None or (current == "" and op is not None and op.startswith(":"))
        if op and op.endswith("?") and unset:
            raise MissingVariable(f"{name}: {arg}")
        if op and op.endswith("-") and unset:
            return arg
        return current or ""

    return _INTERPOLATION.sub(replace, value.replace("$$", "\0")).replace("\0", "$")


def interpolate_tree(node: Any, env: dict[str, str]) -> Any:
    if isinstance(node, str):
        return interpolate(node, env)
    if isinstance(node, list):
        return [interpolate_tree(v, env) for v in node]
    if isinstance(node, dict):
        return {k: interpolate_tree(v, env) for k, v in node.items()}
    return node


def read_env_file(path: Path) -> dict[str, str]:
    """KEY=value lines (comments and blank lines skipped), as Compose and kustomize read them."""
    result = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            result[key.strip()] = value.strip()
    return result


def locked_closure(package: str) -> set[str]:
    """Every package ``uv sync --no-dev --package <package>`` installs, read from uv.lock (extras
    followed, markers ignored)."""
    lock = tomllib.loads((REPO / "uv.lock").read_text())
    packages = {p["name"]: p for p in lock["package"]}
    visited: set[tuple[str, tuple[str, ...]]] = set()
    todo: list[tuple[str, tuple[str, ...]]] = [(package, ())]
    while todo:
        node = todo.pop()
        if node in visited:
            continue
        visited.add(node)
        name, extras = node
        deps = list(packages[name].get("dependencies", []))
        for extra in extras:
            deps += packages[name].get("optional-dependencies", {}).get(extra, [])
        todo += [(d["name"], tuple(d.get("extra", ()))) for d in deps]
    return {name for name, _ in visited}


def parse_settings(app: App, env: dict[str, str]) -> BaseSettings:
    """The app's Settings as the process would build them from exactly ``env`` (anything else in this
    process's environment under the app's prefix is hidden)."""
    saved = {k: v for k, v in os.environ.items() if k.startswith(app.prefix)}
    for key in saved:
        del os.environ[key]
    os.environ.update({k: v for k, v in env.items() if k.startswith(app.prefix)})
    try:
        return app.settings_class()()
    finally:
        for key in [k for k in os.environ if k.startswith(app.prefix)]:
            del os.environ[key]
        os.environ.update(saved)
