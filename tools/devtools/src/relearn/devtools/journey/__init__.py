"""One patient's course through the public APIs, as a clinic and an EHR live it (issue 7).

:class:`Journey` plays the course against a running platform (``make run``, or the test fixture): an initial
evaluation; the drafted plan, reviewed and activated; sessions logged through the sessions service while EMG
and force-plate recordings from ``/work/shared/data/sensors`` stream through the device gateway (FHIR Devices,
a stream binding per recording bound to the patient and the session's Encounter, frames pushed with the clinic
hub's device credentials, the stream closed); a symptomatic session that holds progress; progressions along
several dimensions; competence stages climbing to mastery; a re-assessment whose proposal the therapist
accepts.

After each step it reads what an EHR sees through the one FHIR base URL (CarePlan and its ``_history``,
Observations of the evaluation and the device metrics, Encounters/Procedures, Goals) and records a
:class:`Step`: what happened, which rule fired (the plan-change extension of every new CarePlan version),
which stage each pattern reached and the elapsed time. Events are asynchronous: every wait polls with a
timeout.

``python -m relearn.devtools.journey`` (``make demo``) runs the course against ``make run`` and prints the
timeline.

Modules: ``client`` (URLs, tokens, checked calls, polling), ``recordings`` (sensor files -> frame rows),
``gateway`` (Devices, stream bindings, frames), ``evaluations`` (evaluation bodies), ``plan`` (the plan
service's state and mastery criteria), ``reading`` (what an EHR reads; :class:`Step`), ``course`` (the steps),
``timeline`` (printing), ``demo`` (the command line).
"""

from relearn.devtools.journey.client import Api, JourneyError, PlatformUrls
from relearn.devtools.journey.course import Journey
from relearn.devtools.journey.demo import main
from relearn.devtools.journey.gateway import FRAMES_PER_REQUEST, SID_JOURNEY_DEVICE, Gateway, frames
from relearn.devtools.journey.plan import CRITERIA, PlanService
from relearn.devtools.journey.reading import (
    CS_STAGE,
    EXT_PLAN_CHANGE,
    EXT_PROGRESSION,
    SID_DEVICE_STREAM,
    STAGES,
    Exercise,
    FhirReader,
    PlanChange,
    Step,
    exercises,
    goal_achievement,
    presented_pdf,
    report_codes,
)
from relearn.devtools.journey.recordings import (
    BALANCE_RATE_HZ,
    BALANCE_TRIALS,
    EMG_CHANNELS,
    EMG_COLUMNS,
    EMG_RATE_HZ,
    EMG_RECORDING,
    EMG_SECONDS,
    FORCE_PLATE_CHANNELS,
    Recording,
    balance_recording,
    default_data_dir,
    emg_recording,
)
from relearn.devtools.journey.timeline import describe

__all__ = [
    "BALANCE_RATE_HZ",
    "BALANCE_TRIALS",
    "CRITERIA",
    "CS_STAGE",
    "EMG_CHANNELS",
    "EMG_COLUMNS",
    "EMG_RATE_HZ",
    "EMG_RECORDING",
    "EMG_SECONDS",
    "EXT_PLAN_CHANGE",
    "EXT_PROGRESSION",
    "FORCE_PLATE_CHANNELS",
    "FRAMES_PER_REQUEST",
    "SID_DEVICE_STREAM",
    "SID_JOURNEY_DEVICE",
    "STAGES",
    "Api",
    "Exercise",
    "FhirReader",
    "Gateway",
    "Journey",
    "JourneyError",
    "PlanChange",
    "PlanService",
    "PlatformUrls",
    "Recording",
    "Step",
    "balance_recording",
    "default_data_dir",
    "describe",
    "emg_recording",
    "exercises",
    "frames",
    "goal_achievement",
    "main",
    "presented_pdf",
    "report_codes",
]
