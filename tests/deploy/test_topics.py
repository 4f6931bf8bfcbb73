"""The Kafka topics under deploy/: one list (the KafkaTopic manifests) that matches the code's, and the
compose script that creates them from it on a real broker."""

from __future__ import annotations

import importlib.util
import sys
import uuid
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from deploy_support import K8S, REPO

from relearn.shared.events import all_topics

MANIFEST = K8S / "base" / "platform" / "topics.yaml"


def load_script() -> ModuleType:
    path = REPO / "deploy" / "compose" / "create_topics.py"
    spec = importlib.util.spec_from_file_location("relearn_deploy_create_topics", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


create_topics = load_script()


def test_the_manifest_lists_exactly_the_topics_the_code_uses() -> None:
    deployed = {t.name: t.partitions for t in create_topics.load_topics(MANIFEST)}
    in_code = {t.name: t.partitions for t in all_topics()}
    assert deployed == in_code


def test_every_event_topic_has_its_dead_letter_topic() -> None:
    names = [t.name for t in create_topics.load_topics(MANIFEST)]
    assert len(names) == len(set(names))
    for name in names:
        if not name.endswith(".dlq"):
            assert f"{name}.dlq" in names


def test_the_plan_creates_missing_topics_grows_short_ones_and_never_shrinks() -> None:
    spec = create_topics.TopicSpec
    wanted = [spec("a", 6, 3), spec("b", 6, 3), spec("c", 3, 3)]
    create, grow = create_topics.plan({"b": 2, "c": 12}, wanted)
    assert [t.name for t in create] == ["a"]
    assert grow == {"b": 6}


def test_one_broker_gets_a_min_in_sync_replica_count_it_can_meet() -> None:
    (topic, *_) = create_topics.load_topics(MANIFEST)
    assert int(topic.config["min.insync.replicas"]) > 1, "the manifest is for a replicated cluster"
    assert create_topics.topic_config(topic, 1)["min.insync.replicas"] == "1"
    assert create_topics.topic_config(topic, 3)["min.insync.replicas"] == topic.config["min.insync.replicas"]


def test_the_script_creates_the_topics_on_a_real_broker_and_a_second_run_changes_nothing(
    broker: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The manifest's topics under a fresh prefix, so the session's shared broker keeps its own.
    prefix = f"t{uuid.uuid4().hex[:8]}."
    text = MANIFEST.read_text().replace("relearn.", prefix)
    manifest = tmp_path / "topics.yaml"
    manifest.write_text(text)
    topics = create_topics.load_topics(manifest)
    assert topics and all(t.name.startswith(prefix) for t in topics)

    create_topics.main(["--bootstrap", broker.bootstrap, "--replication-factor", "1", str(manifest)])
    first = capsys.readouterr().out
    assert first.count("created ") == len(topics)

    from kafka.admin import KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
    try:
        described = {d["name"]: len(d["partitions"]) for d in admin.describe_topics([t.name for t in topics])}
    finally:
        admin.close()
    assert described == {t.name: t.partitions for t in topics}

    create_topics.main(["--bootstrap", broker.bootstrap, "--replication-factor", "1", str(manifest)])
    second = capsys.readouterr().out
    assert "created " not in second and "grew " not in second
    assert f"{len(topics)} topics in place" in second
