"""Structural JSON schemas for the custom resources the manifests use (Strimzi, CloudNativePG).

The Kubernetes schemas do not cover custom resources, and the operators' own CRDs are not shipped
in any package here, so these are written for this repository from the operators' documented
APIs: the required fields, their types and enumerations, and closed objects where a misspelt
field would silently do nothing (topic spec, listener, storage volume, managed role, database).
They are a floor, not the operators' full validation.
"""

from __future__ import annotations

from typing import Any

QUANTITY = {"anyOf": [{"type": "string", "pattern": r"^[0-9.]+([KMGTPE]i|[mkMGTPE])?$"}, {"type": "integer"}]}
RESOURCES = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "requests": {"type": "object", "additionalProperties": QUANTITY},
        "limits": {"type": "object", "additionalProperties": QUANTITY},
    },
}
NAME = {"type": "string", "pattern": r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$", "maxLength": 253}


def _resource(
    api_version: str, kind: str, spec: dict[str, Any], labels_required: list[str] | None = None
) -> dict[str, Any]:
    metadata: dict[str, Any] = {
        "type": "object",
        "required": ["name"],
        "properties": {
            "name": NAME,
            "labels": {"type": "object", "additionalProperties": {"type": "string"}},
        },
    }
    if labels_required:
        metadata["properties"]["labels"]["required"] = labels_required
        metadata["required"] = ["name", "labels"]
    return {
        "type": "object",
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "additionalProperties": False,
        "properties": {
            "apiVersion": {"const": api_version},
            "kind": {"const": kind},
            "metadata": metadata,
            "spec": spec,
        },
    }


STORAGE_VOLUME = {
    "type": "object",
    "required": ["type"],
    "additionalProperties": False,
    "properties": {
        "id": {"type": "integer", "minimum": 0},
        "type": {"enum": ["ephemeral", "persistent-claim"]},
        "size": {"type": "string"},
        "class": {"type": "string"},
        "deleteClaim": {"type": "boolean"},
        "kraftMetadata": {"enum": ["shared"]},
    },
}

KAFKA_NODE_POOL = _resource(
    "kafka.strimzi.io/v1beta2",
    "KafkaNodePool",
    {
        "type": "object",
        "required": ["replicas", "roles", "storage"],
        "additionalProperties": False,
        "properties": {
            "replicas": {"type": "integer", "minimum": 0},
            "roles": {"type": "array", "minItems": 1, "items": {"enum": ["controller", "broker"]}},
            "storage": {
                "type": "object",
                "required": ["type"],
                "properties": {
                    "type": {"enum": ["ephemeral", "persistent-claim", "jbod"]},
                    "volumes": {"type": "array", "items": STORAGE_VOLUME},
                },
            },
            "resources": RESOURCES,
            "jvmOptions": {"type": "object"},
            "template": {"type": "object"},
        },
    },
    labels_required=["strimzi.io/cluster"],
)

LISTENER = {
    "type": "object",
    "required": ["name", "port", "type", "tls"],
    "additionalProperties": False,
    "properties": {
        "name": {"type": "string", "pattern": "^[a-z0-9]{1,11}$"},
        "port": {"type": "integer", "minimum": 9092},
        "type": {"enum": ["internal", "route", "loadbalancer", "nodeport", "ingress", "cluster-ip"]},
        "tls": {"type": "boolean"},
        "authentication": {"type": "object"},
        "configuration": {"type": "object"},
        "networkPolicyPeers": {"type": "array", "items": {"type": "object"}},
    },
}

KAFKA = _resource(
    "kafka.strimzi.io/v1beta2",
    "Kafka",
    {
        "type": "object",
        "required": ["kafka"],
        "properties": {
            "kafka": {
                "type": "object",
                "required": ["listeners"],
                "properties": {
                    "version": {"type": "string"},
                    "metadataVersion": {"type": "string"},
                    "listeners": {"type": "array", "minItems": 1, "items": LISTENER},
                    "config": {
                        "type": "object",
                        "additionalProperties": {"type": ["string", "integer", "boolean", "number"]},
                    },
                    "authorization": {"type": "object"},
                    "rack": {"type": "object"},
                    "metricsConfig": {"type": "object"},
                    "template": {"type": "object"},
                },
                # ZooKeeper and in-Kafka replicas/storage are gone: nodes come from KafkaNodePools.
                "not": {"anyOf": [{"required": ["replicas"]}, {"required": ["storage"]}]},
            },
            "entityOperator": {
                "type": "object",
                "properties": {"topicOperator": {"type": "object"}, "userOperator": {"type": "object"}},
            },
            "cruiseControl": {"type": "object"},
            "kafkaExporter": {"type": "object"},
        },
        "not": {"required": ["zookeeper"]},
    },
)

KAFKA_TOPIC = _resource(
    "kafka.strimzi.io/v1beta2",
    "KafkaTopic",
    {
        "type": "object",
        "required": ["partitions", "replicas"],
        "additionalProperties": False,
        "properties": {
            "topicName": {"type": "string", "pattern": r"^[a-zA-Z0-9._-]{1,249}$"},
            "partitions": {"type": "integer", "minimum": 1},
            "replicas": {"type": "integer", "minimum": 1, "maximum": 32767},
            "config": {"type": "object", "additionalProperties": {"type": ["string", "integer", "boolean"]}},
        },
    },
    labels_required=["strimzi.io/cluster"],
)

ROLE = {
    "type": "object",
    "required": ["name"],
    "additionalProperties": False,
    "properties": {
        "name": {"type": "string", "pattern": "^[a-z_][a-z0-9_]*$"},
        "ensure": {"enum": ["present", "absent"]},
        "login": {"type": "boolean"},
        "superuser": {"type": "boolean"},
        "createdb": {"type": "boolean"},
        "comment": {"type": "string"},
        "connectionLimit": {"type": "integer"},
        "inRoles": {"type": "array", "items": {"type": "string"}},
        "passwordSecret": {
            "type": "object",
            "required": ["name"],
            "additionalProperties": False,
            "properties": {"name": NAME},
        },
    },
}

CNPG_CLUSTER = _resource(
    "postgresql.cnpg.io/v1",
    "Cluster",
    {
        "type": "object",
        "required": ["instances", "storage"],
        "properties": {
            "instances": {"type": "integer", "minimum": 1},
            "imageName": {"type": "string"},
            "storage": {
                "type": "object",
                "required": ["size"],
                "properties": {"size": {"type": "string"}, "storageClass": {"type": "string"}},
            },
            "resources": RESOURCES,
            "managed": {
                "type": "object",
                "properties": {"roles": {"type": "array", "items": ROLE}},
            },
        },
    },
)

CNPG_DATABASE = _resource(
    "postgresql.cnpg.io/v1",
    "Database",
    {
        "type": "object",
        "required": ["cluster", "name", "owner"],
        "additionalProperties": False,
        "properties": {
            "cluster": {
                "type": "object",
                "required": ["name"],
                "additionalProperties": False,
                "properties": {"name": NAME},
            },
            "name": {"type": "string", "pattern": "^[a-z_][a-z0-9_]*$"},
            "owner": {"type": "string", "pattern": "^[a-z_][a-z0-9_]*$"},
            "ensure": {"enum": ["present", "absent"]},
        },
    },
)

SCHEMAS: dict[tuple[str, str], dict[str, Any]] = {
    ("kafka.strimzi.io/v1beta2", "Kafka"): KAFKA,
    ("kafka.strimzi.io/v1beta2", "KafkaNodePool"): KAFKA_NODE_POOL,
    ("kafka.strimzi.io/v1beta2", "KafkaTopic"): KAFKA_TOPIC,
    ("postgresql.cnpg.io/v1", "Cluster"): CNPG_CLUSTER,
    ("postgresql.cnpg.io/v1", "Database"): CNPG_DATABASE,
}
