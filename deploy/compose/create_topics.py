"""Create Relearn's Kafka topics for docker-compose, from the same KafkaTopic manifests Strimzi uses.

The one list of topics under ``deploy/`` is ``deploy/k8s/base/platform/topics.yaml``; on Kubernetes the
Strimzi topic operator applies it, under docker-compose this script does (the compose file mounts both
into a service image, which already carries kafka-python and PyYAML). It is idempotent: existing
topics are kept, a topic with fewer partitions than listed is grown (partitions never shrink).

    python create_topics.py --bootstrap kafka:9092 --replication-factor 1 topics.yaml
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from kafka.admin import KafkaAdminClient


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    replicas: int
    config: dict[str, str] = field(default_factory=dict)


def load_topics(path: Path) -> list[TopicSpec]:
    """The KafkaTopic resources of a manifest file, as topic specs (other kinds are ignored)."""
    specs: list[TopicSpec] = []
    for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")):
        if not isinstance(doc, dict) or doc.get("kind") != "KafkaTopic":
            continue
        spec: dict[str, Any] = doc["spec"]
        specs.append(
            TopicSpec(
                name=str(spec.get("topicName") or doc["metadata"]["name"]),
                partitions=int(spec["partitions"]),
                replicas=int(spec["replicas"]),
                config={str(k): str(v) for k, v in (spec.get("config") or {}).items()},
            )
        )
    return specs


def plan(existing: Mapping[str, int], wanted: Iterable[TopicSpec]) -> tuple[list[TopicSpec], dict[str, int]]:
    """What to do: topics to create, and existing topics to grow (name -> new partition count)."""
    create = [t for t in wanted if t.name not in existing]
    grow = {t.name: t.partitions for t in wanted if t.name in existing and existing[t.name] < t.partitions}
    return create, grow


def topic_config(topic: TopicSpec, replication_factor: int) -> dict[str, str]:
    """The topic's config for a cluster with ``replication_factor`` copies: min.insync.replicas cannot
    exceed it (one broker and min ISR 2 would refuse every acks=all write)."""
    config = dict(topic.config)
    if "min.insync.replicas" in config:
        config["min.insync.replicas"] = str(min(int(config["min.insync.replicas"]), replication_factor))
    return config


def _connect(bootstrap: str, wait_s: float) -> KafkaAdminClient:
    deadline = time.monotonic() + wait_s
    while True:
        try:
            return KafkaAdminClient(bootstrap_servers=bootstrap, client_id="relearn-create-topics")
        except Exception as exc:  # broker still starting: retry until the deadline
            if time.monotonic() > deadline:
                raise SystemExit(f"broker {bootstrap} unreachable: {exc}") from exc
            time.sleep(2)


def ensure(
    bootstrap: str, topics: list[TopicSpec], replication_factor: int | None, wait_s: float = 60
) -> None:
    """Create the missing topics and grow the short ones; ``replication_factor`` overrides the manifests'."""
    admin = _connect(bootstrap, wait_s)
    try:
        described = admin.describe_topics([t.name for t in topics])
        existing = {
            d["name"]: len(d.get("partitions") or [])
            for d in described
            if d.get("error_code", 0) == 0 and d.get("partitions")
        }
        create, grow = plan(existing, topics)
        if create:
            admin.create_topics(
                {
                    t.name: {
                        "num_partitions": t.partitions,
                        "replication_factor": replication_factor or t.replicas,
                        "configs": topic_config(t, replication_factor or t.replicas),
                    }
                    for t in create
                }
            )
        if grow:
            admin.create_partitions(grow)
        for t in create:
            print(f"created {t.name} ({t.partitions} partitions)")
        for name, count in grow.items():
            print(f"grew {name} to {count} partitions")
        print(f"{len(topics)} topics in place")
    finally:
        admin.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("manifest", type=Path, help="a file of KafkaTopic resources")
    parser.add_argument("--bootstrap", required=True, help="host:port of a broker")
    parser.add_argument("--replication-factor", type=int, default=None, help="override (1 on one broker)")
    parser.add_argument("--wait", type=float, default=60.0, help="seconds to wait for the broker")
    args = parser.parse_args(argv)
    topics = load_topics(args.manifest)
    if not topics:
        sys.exit(f"no KafkaTopic in {args.manifest}")
    ensure(args.bootstrap, topics, args.replication_factor, args.wait)


if __name__ == "__main__":
    main()
