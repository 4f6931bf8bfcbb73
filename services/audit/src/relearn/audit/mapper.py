"""FHIR mapping of the audit trail: a service's audit record -> the IHE BALP shaped AuditEvent.

BALP's RESTful patterns: ``type`` rest, ``subtype`` the restful-interaction code, ``action`` C/R/U/D/E
(searches and operations E), ``outcome`` 0/4/8, the client (DCM 110153 Source Role ID), the user (BALP
UserOauthAgent, the requestor) or the device, the server (110152), ``source.observer`` the service, one
``entity`` per patient touched (role 1 Patient), the resource (role 4), the query of a search (role 24,
base64) and the request id (BALP XrequestId).
"""

from __future__ import annotations

import base64
from typing import Any

from relearn.audit.schemas import AuditRecord
from relearn.shared.fhir import identifier_system

_EVENT_TYPE = {
    "system": "http://terminology.hl7.org/CodeSystem/audit-event-type",
    "code": "rest",
    "display": "Restful Operation",
}
_INTERACTION = "http://hl7.org/fhir/restful-interaction"
_DCM = "http://dicom.nema.org/resources/ontology/DCM"
_ENTITY_TYPE = "http://terminology.hl7.org/CodeSystem/audit-entity-type"
_OBJECT_ROLE = "http://terminology.hl7.org/CodeSystem/object-role"
_BALP = "https://profiles.ihe.net/ITI/BALP"
_PARTICIPATION = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType"
CLIENT_ID_SYSTEM = identifier_system("client-id")
SUBJECT_SYSTEM = identifier_system("token-subject")
REQUEST_ID_SYSTEM = identifier_system("request-id")

# The BALP profile of a successful interaction, by action, with and without a patient.
_PROFILES = {
    "C": ("Create", "PatientCreate"),
    "R": ("Read", "PatientRead"),
    "U": ("Update", "PatientUpdate"),
    "D": ("Delete", "PatientDelete"),
    "E": ("Query", "PatientQuery"),
}


def interaction(kind: str, method: str, path: str, has_query: bool) -> tuple[str, str]:
    """The restful-interaction code and the BALP action (C/R/U/D/E) of one access."""
    if kind == "websocket":
        return "operation", "E"
    if path == "/fhir" or path.startswith("/fhir/"):
        segs = [s for s in path[len("/fhir") :].split("/") if s]
        return _fhir_interaction(method, segs)
    if method == "GET":
        return ("search-type", "E") if has_query else ("read", "R")
    return {
        "POST": ("create", "C"),
        "PUT": ("update", "U"),
        "PATCH": ("patch", "U"),
        "DELETE": ("delete", "D"),
    }.get(method, ("operation", "E"))


def _fhir_interaction(method: str, segs: list[str]) -> tuple[str, str]:
    if any(s.startswith("$") for s in segs):
        return "operation", "E"
    if not segs:
        return ("transaction", "E") if method == "POST" else ("search-system", "E")
    if len(segs) == 1:
        if segs[0] == "_history":
            return "history-system", "R"
        return {
            "POST": ("create", "C"),
            "PUT": ("update", "U"),
            "PATCH": ("patch", "U"),
            "DELETE": ("delete", "D"),
        }.get(method, ("search-type", "E"))
    if segs[1] == "_search":
        return "search-type", "E"
    if segs[1] == "_history":
        return "history-type", "R"
    if len(segs) == 2:
        return {
            "PUT": ("update", "U"),
            "PATCH": ("patch", "U"),
            "DELETE": ("delete", "D"),
        }.get(method, ("read", "R"))
    if segs[2] == "_history":
        return ("vread", "R") if len(segs) >= 4 else ("history-instance", "R")
    return "operation", "E"


def outcome_code(status: int) -> str:
    """BALP/FHIR AuditEvent.outcome: 0 success, 4 minor failure (4xx, denied ones too), 8 serious (5xx)."""
    if status < 400:
        return "0"
    return "4" if status < 500 else "8"


def _resource_entity(path: str) -> dict[str, Any] | None:
    """The domain resource an instance-level FHIR access is about (``Type/id`` or ``Type/id/_history/v``)."""
    if not path.startswith("/fhir/"):
        return None
    segs = [s for s in path[len("/fhir/") :].split("/") if s]
    if len(segs) < 2 or segs[1].startswith(("_", "$")):
        return None
    ref = f"{segs[0]}/{segs[1]}"
    if len(segs) >= 4 and segs[2] == "_history":
        ref += f"/_history/{segs[3]}"
    return {
        "what": {"reference": ref},
        "type": {"system": _ENTITY_TYPE, "code": "2", "display": "System Object"},
        "role": {"system": _OBJECT_ROLE, "code": "4", "display": "Domain Resource"},
    }


def _agents(rec: AuditRecord) -> list[dict[str, Any]]:
    principal = rec.principal
    network = {"address": rec.client_host, "type": "2"} if rec.client_host else None
    agents: list[dict[str, Any]] = []
    if principal is None:
        # No verified token: the requestor is known only by its address.
        unknown: dict[str, Any] = {
            "type": {"coding": [{"system": _DCM, "code": "110153", "display": "Source Role ID"}]},
            "who": {"display": "unauthenticated client"},
            "requestor": True,
        }
        if network:
            unknown["network"] = network
        agents.append(unknown)
    else:
        client: dict[str, Any] = {
            "type": {"coding": [{"system": _DCM, "code": "110153", "display": "Source Role ID"}]},
            "who": {"identifier": {"system": CLIENT_ID_SYSTEM, "value": principal.client_id}},
            "requestor": False,
        }
        if network:
            client["network"] = network
        agents.append(client)
        device = principal.device
        if device:
            agents.append(
                {
                    "type": {"coding": [{"system": _PARTICIPATION, "code": "DEV", "display": "device"}]},
                    "who": {"reference": f"Device/{device}"},
                    "requestor": True,
                }
            )
        else:
            fhir_user = principal.fhir_user
            who: dict[str, Any] = (
                {"reference": fhir_user}
                if fhir_user
                else {"identifier": {"system": SUBJECT_SYSTEM, "value": principal.subject}}
            )
            agents.append(
                {
                    "type": {
                        "coding": [
                            {
                                "system": f"{_BALP}/CodeSystem/UserAgentTypes",
                                "code": "UserOauthAgent",
                                "display": "User OAuth Agent participant",
                            }
                        ]
                    },
                    "who": who,
                    "requestor": True,
                    **({"policy": [principal.scope[:1000]]} if principal.scope else {}),
                }
            )
    agents.append(
        {
            "type": {"coding": [{"system": _DCM, "code": "110152", "display": "Destination Role ID"}]},
            "who": {"display": f"relearn-{rec.service}"},
            "requestor": False,
            "network": {"address": rec.site, "type": "5"},
        }
    )
    return agents


def audit_event(rec: AuditRecord, id: str) -> dict[str, Any]:
    """The AuditEvent of one access (FHIR R4 JSON), after IHE BALP's RESTful patterns."""
    code, action = interaction(rec.kind, rec.method, rec.path, bool(rec.query))
    outcome = outcome_code(rec.status)
    patients = sorted(rec.patients)
    entities: list[dict[str, Any]] = [
        {
            "what": {"reference": f"Patient/{p}"},
            "type": {"system": _ENTITY_TYPE, "code": "1", "display": "Person"},
            "role": {"system": _OBJECT_ROLE, "code": "1", "display": "Patient"},
        }
        for p in patients
    ]
    resource = _resource_entity(rec.path)
    if resource is not None:
        entities.append(resource)
    if rec.query and action == "E":
        entities.append(
            {
                "type": {"system": _ENTITY_TYPE, "code": "2", "display": "System Object"},
                "role": {"system": _OBJECT_ROLE, "code": "24", "display": "Query"},
                "description": rec.path[:1000],
                "query": base64.b64encode(rec.query.encode("latin-1")).decode("ascii"),
            }
        )
    entities.append(
        {
            "what": {"identifier": {"system": REQUEST_ID_SYSTEM, "value": rec.request_id}},
            "type": {"system": f"{_BALP}/CodeSystem/BasicAuditEntityType", "code": "XrequestId"},
            "description": f"{rec.method} {rec.path[:1000]}",
        }
    )
    event: dict[str, Any] = {
        "resourceType": "AuditEvent",
        "id": id,
        "type": _EVENT_TYPE,
        "subtype": [{"system": _INTERACTION, "code": code}],
        "action": action,
        "recorded": rec.recorded.isoformat(timespec="milliseconds"),
        "outcome": outcome,
        **({"outcomeDesc": f"HTTP {rec.status}"} if rec.status >= 400 else {}),
        "agent": _agents(rec),
        "source": {
            "site": rec.site,
            "observer": {"display": f"relearn-{rec.service}"},
            "type": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/security-source-type",
                    "code": "4",
                    "display": "Application Server",
                }
            ],
        },
        "entity": entities,
    }
    if outcome == "0":
        basic, with_patient = _PROFILES[action]
        profile = with_patient if patients else basic
        event["meta"] = {"profile": [f"{_BALP}/StructureDefinition/IHE.BasicAudit.{profile}"]}
    return event
