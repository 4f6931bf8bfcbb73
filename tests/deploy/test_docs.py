"""docs/deploy.md: what it tells an operator to type refers to files and resources that exist."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from deploy_support import REPO

DOC = (REPO / "docs" / "deploy.md").read_text()
KINDS = {
    "kafka": "Kafka",
    "deployment": "Deployment",
    "svc": "Service",
    "cluster.postgresql.cnpg.io": "Cluster",
}


def test_every_repository_path_the_guide_names_exists() -> None:
    paths = set(re.findall(r"`((?:deploy|services|tools|tests|docs)/[\w./-]+|docker-compose\.yml)`", DOC))
    paths |= set(re.findall(r"(?:-k|-f) ((?:deploy|services)/[\w./-]+)", DOC))
    assert len(paths) > 10
    for path in paths:
        assert (REPO / path.rstrip("/")).exists(), f"docs/deploy.md names {path}, which does not exist"


def test_the_label_selectors_and_resources_the_guide_uses_exist(
    built: Callable[[str], list[dict[str, Any]]],
) -> None:
    docs = built("dev")
    selectors = set(re.findall(r" -l ([\w./-]+)=([\w-]+)", DOC))
    assert selectors
    for key, value in selectors:
        assert any(d["metadata"].get("labels", {}).get(key) == value for d in docs), (
            f"-l {key}={value} selects nothing"
        )
    names = set(re.findall(r"\b(kafka|deployment|svc|cluster\.postgresql\.cnpg\.io)/([\w-]+)", DOC))
    assert names
    for kind, name in names:
        assert any(d["kind"] == KINDS[kind] and d["metadata"]["name"] == name for d in docs), f"{kind}/{name}"
