"""The container images: one Dockerfile for every app (build arguments from docker-bake.hcl), built from
the repository root with uv, slim and non-root, whose commands are the app's own console scripts."""

from __future__ import annotations

import json
import re
import subprocess
import tomllib
from pathlib import Path

import pytest
from deploy_support import APPS, BAKE, REPO, App, bake_targets, cli_commands, dockerignore_excludes, tool

DOCKERIGNORE = (REPO / ".dockerignore").read_text()
DOCKERFILE = REPO / "Dockerfile"


def instructions(dockerfile: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined and comments dropped."""
    lines: list[str] = []
    pending = ""
    for raw in dockerfile.read_text().splitlines():
        if raw.lstrip().startswith("#") and not pending:
            continue
        if raw.rstrip().endswith("\\"):
            pending += raw.rstrip()[:-1] + " "
            continue
        lines.append(pending + raw)
        pending = ""
    result = []
    for line in lines:
        if line.strip():
            word, _, rest = line.strip().partition(" ")
            result.append((word.upper(), rest.strip()))
    return result


def final_stage(instrs: list[tuple[str, str]]) -> list[tuple[str, str]]:
    last_from = max(i for i, (word, _) in enumerate(instrs) if word == "FROM")
    return instrs[last_from:]


def arg_defaults(instrs: list[tuple[str, str]]) -> dict[str, str]:
    return {k: v for word, rest in instrs if word == "ARG" and "=" in rest for k, v in [rest.split("=", 1)]}


def expand(value: str, args: dict[str, str]) -> str:
    return re.sub(r"\$\{(\w+)\}", lambda m: args.get(m.group(1), m.group(0)), value)


def build_args(app: App) -> dict[str, str]:
    """The Dockerfile's ARG defaults overridden by the app's bake target."""
    return {**arg_defaults(instructions(DOCKERFILE)), **bake_targets()[app.name]["args"]}


def test_there_is_one_dockerfile() -> None:
    copies = sorted(
        p.relative_to(REPO).as_posix() for p in REPO.glob("**/Dockerfile*") if ".venv" not in p.parts
    )
    assert copies == ["Dockerfile"], "every app builds from the one Dockerfile with its build arguments"


@pytest.mark.parametrize("app", APPS, ids=lambda a: a.name)
def test_the_bake_file_builds_each_app_with_its_own_arguments(app: App) -> None:
    target = bake_targets()[app.name]
    assert target["args"]["APP"] == app.name
    assert target["args"]["APP_ENV_PREFIX"] == app.prefix
    assert target["args"]["APP_PORT"] == str(app.settings_class().model_fields["port"].default)
    assert [t.split(":")[0] for t in target["tags"]] == [f"relearn/{app.name}"]
    assert "APP_EXTRAS" not in target["args"], "an app's own image holds no development tooling"
    group = re.search(r'group "default" \{\s*targets\s*=\s*\[(.*?)\]', BAKE, flags=re.DOTALL)
    assert group and f'"{app.name}"' in group.group(1), "`docker buildx bake` builds every app"


@pytest.mark.parametrize("app", APPS, ids=lambda a: a.name)
def test_each_app_builds_from_the_repo_root_with_uv_on_slim_python(app: App) -> None:
    instrs = instructions(DOCKERFILE)
    args = build_args(app)
    bases = [expand(rest.split()[0], args) for word, rest in instrs if word == "FROM"]
    assert bases[-1].startswith("python:3.11-slim"), "the runtime image is the slim Python 3.11 image"
    assert any(b.startswith("ghcr.io/astral-sh/uv:") for b in bases), "uv comes from the official uv image"
    runs = [expand(rest, args) for word, rest in instrs if word == "RUN"]
    syncs = [r for r in runs if "uv sync" in r]
    assert syncs, "dependencies are installed with uv sync"
    for sync in syncs:
        assert "--frozen" in sync and "--no-dev" in sync, "installs exactly the lockfile, without dev tools"
        assert f'--package "relearn-{app.name}"' in sync, "installs this app's package only"
    assert any("--no-editable" in s for s in syncs), "the runtime image does not depend on /src"
    # The code of other apps stays out of this image.
    copies = [expand(rest, args) for word, rest in instrs if word == "COPY" and "--from" not in rest]
    for other in APPS:
        if other is not app:
            assert not any(f"services/{other.name}/src" in c for c in copies)
    assert any(f"services/{app.name}/src" in c for c in copies)


def test_the_image_copies_every_workspace_manifest_so_the_frozen_lockfile_resolves() -> None:
    root = tomllib.loads((REPO / "pyproject.toml").read_text())
    members = {
        p.parent.relative_to(REPO).as_posix()
        for pattern in root["tool"]["uv"]["workspace"]["members"]
        for p in REPO.glob(f"{pattern}/pyproject.toml")
    }
    text = DOCKERFILE.read_text()
    copied = set(re.findall(r"^COPY (\S+)/pyproject\.toml ", text, flags=re.MULTILINE))
    assert members <= copied, f"add COPY lines for {sorted(members - copied)}"
    assert re.search(r"^COPY uv\.lock pyproject\.toml ", text, flags=re.MULTILINE)


@pytest.mark.parametrize("app", APPS, ids=lambda a: a.name)
def test_the_image_runs_as_a_non_root_user(app: App) -> None:
    stage = final_stage(instructions(DOCKERFILE))
    args = build_args(app)
    users = [expand(rest, args) for word, rest in stage if word == "USER"]
    assert users, "the runtime stage sets USER"
    uid = users[-1].split(":")[0]
    assert uid.isdigit() and int(uid) != 0, "a numeric non-root uid (Kubernetes runAsNonRoot can verify it)"
    assert uid == "10001", "the uid the Kubernetes securityContext declares"


@pytest.mark.parametrize("app", APPS, ids=lambda a: a.name)
def test_the_image_command_is_a_console_script_of_the_app(app: App) -> None:
    instrs = instructions(DOCKERFILE)
    args = build_args(app)
    stage = final_stage(instrs)
    (cmd,) = [json.loads(rest) for word, rest in stage if word == "CMD"]
    script, command = cmd
    # The default command's script is a link to the app's own console script, made at build time.
    links = re.findall(
        r'ln -s "([\w-]+)" /app/\.venv/bin/([\w-]+)', " ".join(expand(r, args) for w, r in instrs)
    )
    assert (f"relearn-{app.name}", script) in links
    assert f"relearn-{app.name}" in app.console_scripts(), f"relearn-{app.name} is no script of {app.name}"
    assert command in cli_commands(app.script)
    exposed = [int(expand(rest, args)) for word, rest in stage if word == "EXPOSE"]
    assert exposed == [app.settings_class().model_fields["port"].default], "EXPOSE is the app's settings port"
    env = " ".join(expand(rest, args) for word, rest in stage if word == "ENV")
    assert f"{app.prefix}HOST=0.0.0.0" in env and f"{app.prefix}PORT={exposed[0]}" in env


@pytest.mark.parametrize("app", APPS, ids=lambda a: a.name)
def test_the_app_cli_offers_the_commands_deployments_run(app: App) -> None:
    wanted = {"serve", "worker", "migrate"} if app.has_database else {"serve"}
    assert wanted <= cli_commands(app.script)


@pytest.mark.parametrize("app", APPS, ids=lambda a: a.name)
def test_what_the_dockerfile_copies_exists_and_reaches_the_build_context(app: App) -> None:
    instrs = instructions(DOCKERFILE)
    args = build_args(app)
    sources = [
        expand(rest, args).split()[:-1] for word, rest in instrs if word == "COPY" and "--from" not in rest
    ]
    for group in sources:
        for source in group:
            path = REPO / source
            assert path.exists(), f"COPY {source}: no such path"
            files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
            sent = [
                f for f in files if not dockerignore_excludes(DOCKERIGNORE, f.relative_to(REPO).as_posix())
            ]
            assert sent, f"COPY {source}: .dockerignore keeps all of it out of the build context"


def test_dockerignore_keeps_local_state_out_of_the_build_context() -> None:
    for local in [
        ".venv/bin/python",
        "var/evaluation.db",
        ".git/HEAD",
        "shared/src/relearn/x/__pycache__/a.pyc",
        ".env",
        "deploy/k8s/overlays/prod/secrets/evaluation-db.env",
    ]:
        assert dockerignore_excludes(DOCKERIGNORE, local), local
    assert not dockerignore_excludes(DOCKERIGNORE, "services/plan/src/relearn/plan/migrations/env.py")


def test_hadolint_finds_nothing_in_the_dockerfile() -> None:
    result = subprocess.run(
        [tool("hadolint"), "--no-color", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
