"""``python -m relearn.devtools.journey`` / ``relearn-dev demo`` / ``make demo``: the course against a running
platform (``make run``), printed as a timeline."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import fields
from pathlib import Path

import httpx

from relearn.devtools.journey.client import JourneyError, PlatformUrls
from relearn.devtools.journey.course import Journey
from relearn.devtools.journey.reading import Step
from relearn.devtools.journey.timeline import describe
from relearn.devtools.platform import PlatformSettings


def main(argv: Sequence[str] | None = None) -> int:
    defaults = PlatformUrls.from_settings()
    parser = argparse.ArgumentParser(
        prog="python -m relearn.devtools.journey",
        description="Play one patient's course against a running platform (make run) and print the timeline.",
    )
    # --fhir-base, --issuer, --evaluation, --plan, --sessions, --device-gateway
    for f in fields(PlatformUrls):
        parser.add_argument(f"--{f.name.replace('_', '-')}", default=getattr(defaults, f.name))
    parser.add_argument("--patient", default=None, help="patient id (default: a new journey-<hex>)")
    parser.add_argument(
        "--data-dir", type=Path, default=None, help="sensor recordings (../shared/data/sensors)"
    )
    parser.add_argument(
        "--timeout", type=float, default=30.0, help="seconds to wait for each asynchronous step"
    )
    parser.add_argument(
        "--report-dir",
        type=Path,
        default=PlatformSettings().var_dir / "reports",
        help="where the progress report's and discharge summary's PDFs are written (var/reports)",
    )
    args = parser.parse_args(argv)
    urls = PlatformUrls(**{f.name: getattr(args, f.name) for f in fields(PlatformUrls)})
    try:
        httpx.get(f"{urls.fhir_base}/metadata", timeout=5.0).raise_for_status()
    except httpx.HTTPError as exc:
        print(
            f"The platform does not answer at {urls.fhir_base} ({exc}). Start it with `make run`.",
            file=sys.stderr,
        )
        return 1

    def show(step: Step) -> None:
        print(describe(step), flush=True)

    with Journey(
        urls,
        patient=args.patient,
        data_dir=args.data_dir,
        timeout_s=args.timeout,
        on_step=show,
        report_dir=args.report_dir,
    ) as journey:
        print(f"Relearn journey of Patient/{journey.patient} (FHIR base {urls.fhir_base})\n", flush=True)
        try:
            journey.run()
        except JourneyError as exc:
            print(f"\nthe journey stopped: {exc}", file=sys.stderr)
            return 1
        slowest = journey.slowest()
        print(
            f"\n{len(journey.steps)} steps in {journey.wall_time_s:.1f}s; slowest: {slowest.name} "
            f"({slowest.duration_s:.1f}s). An EHR reads it all at {urls.fhir_base} "
            f"(e.g. CarePlan/{journey.plan_id}/_history)."
        )
        for step in journey.steps:
            if step.report_pdf is not None:
                print(f"{step.name} PDF: {step.report_pdf}")
    return 0
