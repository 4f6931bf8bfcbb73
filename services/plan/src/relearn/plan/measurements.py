"""The plan service's local copy of the patient's measurements, fed by ``observation.recorded.v1``.

The progression engine judges mastery from these rows without calling the evaluation
service. Each row is the latest version of one Observation; a replayed or older event
never overwrites a newer one.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Index
from sqlmodel import Field, Session, SQLModel, select

from relearn.shared.events.envelope import CloudEvent


class RecordedMeasurement(SQLModel, table=True):
    __tablename__ = "recorded_measurement"
    __table_args__ = (Index("ix_recorded_measurement_patient_code", "patient_id", "code"),)

    observation_id: str = Field(primary_key=True, max_length=64)
    version_id: int
    patient_id: str = Field(max_length=64)
    code: str = Field(max_length=128, description="system|code of the first coding")
    status: str = Field(max_length=32)
    value: float | None = None
    unit: str | None = Field(default=None, max_length=32)
    effective: str | None = Field(
        default=None, max_length=64, description="as sent: dateTime or period start"
    )
    event_id: str = Field(max_length=64)
    received_at: datetime


def _first_code(observation: dict[str, Any]) -> str:
    codings = (observation.get("code") or {}).get("coding") or [{}]
    c = codings[0]
    return f"{c.get('system', '')}|{c.get('code', '')}"


def _effective(observation: dict[str, Any]) -> str | None:
    for key in ("effectiveDateTime", "effectiveInstant"):
        if key in observation:
            return str(observation[key])
    period = observation.get("effectivePeriod")
    return str(period.get("start")) if isinstance(period, dict) and "start" in period else None


def record_observation(session: Session, event: CloudEvent) -> None:
    """Handler for ``observation.recorded.v1``: upsert the measurement, newest version wins."""
    data = event.data
    obs: dict[str, Any] = data["observation"]
    version = int(data["versionId"])
    row = session.exec(
        select(RecordedMeasurement).where(RecordedMeasurement.observation_id == data["id"])
    ).first()
    if row is not None and row.version_id >= version:
        return
    quantity = obs.get("valueQuantity") or {}
    if row is None:
        row = RecordedMeasurement(
            observation_id=data["id"],
            version_id=version,
            patient_id=event.subject,
            code="",
            status="",
            event_id=event.id,
            received_at=event.time,
        )
    row.version_id = version
    row.patient_id = event.subject
    row.code = _first_code(obs)
    row.status = str(obs.get("status", "unknown"))
    row.value = float(quantity["value"]) if "value" in quantity else None
    row.unit = quantity.get("code") or quantity.get("unit")
    row.effective = _effective(obs)
    row.event_id = event.id
    row.received_at = event.time
    session.add(row)
