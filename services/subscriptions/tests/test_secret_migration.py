"""Subscriptions stored before the secret was write-only: the migration masks the secret in every version."""

from __future__ import annotations

import json
from collections.abc import Callable

import sqlalchemy as sa

from relearn.shared.migrations import upgrade

SECRET_URL = "https://relearn.health/fhir/StructureDefinition/subscription-secret"


def test_the_migration_masks_secrets_stored_before(pg_database: Callable[[str], str]) -> None:
    url = pg_database("subscriptions_secret_migration")
    upgrade("relearn.subscriptions", url, "6f5821db17da")  # before the secret was write-only
    resource = {
        "resourceType": "Subscription",
        "id": "s1",
        "status": "active",
        "extension": [{"url": SECRET_URL, "valueString": "an-old-plain-secret-value"}],
    }
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO fhir_resource (resource_type, id, version_id, last_updated, deleted, text) "
                "VALUES ('Subscription', 's1', 1, :at, false, :text)"
            ),
            {"at": "2026-01-01T00:00:00Z", "text": json.dumps(resource)},
        )
        conn.execute(
            sa.text(
                "INSERT INTO fhir_resource_version "
                "(resource_type, id, version_id, last_updated, method, text) "
                "VALUES ('Subscription', 's1', 1, :at, 'POST', :text)"
            ),
            {"at": "2026-01-01T00:00:00Z", "text": json.dumps(resource)},
        )
    upgrade("relearn.subscriptions", url)
    with engine.connect() as conn:
        texts = [
            conn.execute(sa.text(f"SELECT text FROM {table} WHERE id = 's1'")).scalar_one()
            for table in ("fhir_resource", "fhir_resource_version")
        ]
    engine.dispose()
    for text in texts:
        assert "an-old-plain-secret-value" not in text
        stored = json.loads(text)
        assert stored["extension"] == [{"url": SECRET_URL, "valueString": "********"}]
        assert stored["status"] == "active"
