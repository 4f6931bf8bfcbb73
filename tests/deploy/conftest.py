"""Fixtures for the offline deployment checks (nothing here needs a Docker engine or a cluster)."""

from __future__ import annotations

import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

# The tests here import their shared helpers as a plain module.
sys.path.insert(0, str(Path(__file__).parent))

from deploy_support import K8S, REPO, kustomize, load_all


def _skip_real_secrets(folder: str, names: list[str]) -> set[str]:
    # An operator's real prod credentials (git-ignored) never leave their folder.
    if Path(folder).parts[-3:] == ("overlays", "prod", "secrets"):
        return {n for n in names if not n.endswith(".example") and n != ".gitignore"}
    return set()


@pytest.fixture(scope="session")
def k8s_copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """deploy/k8s copied aside, with the prod overlay's Secret files made from their .example
    templates as an operator does before the first build."""
    target = tmp_path_factory.mktemp("k8s") / "k8s"
    shutil.copytree(K8S, target, ignore=_skip_real_secrets)
    for example in (target / "overlays" / "prod" / "secrets").glob("*.example"):
        shutil.copy(example, example.with_suffix(""))
    return target


@pytest.fixture(scope="session")
def built(k8s_copy: Path) -> Callable[[str], list[dict[str, Any]]]:
    """``built("dev")`` -> the documents `kubectl kustomize` renders for that overlay (cached)."""
    cache: dict[str, list[dict[str, Any]]] = {}

    def build(overlay: str) -> list[dict[str, Any]]:
        if overlay not in cache:
            path = k8s_copy / "base" if overlay == "base" else k8s_copy / "overlays" / overlay
            result = kustomize(path)
            assert result.returncode == 0, result.stderr
            cache[overlay] = load_all(result.stdout)
        return cache[overlay]

    return build


@pytest.fixture(scope="session")
def compose() -> dict[str, Any]:
    doc = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    assert isinstance(doc, dict)
    return doc
