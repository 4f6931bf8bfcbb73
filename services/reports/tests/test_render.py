"""The report drawn from a synthetic course: every section's page is there (the PDF's text layer), each plot
area holds a drawing (the pages rasterised with pypdfium2, PDFium from PyPI), inputs are bounded."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import numpy as np
import pypdfium2 as pdfium
import pytest

from relearn.reports.domain.course import (
    SECTIONS,
    AdherenceWeek,
    Course,
    DecisionRow,
    EmgTrace,
    GoalRow,
    Limits,
    PatternCourse,
    Point,
    StageStep,
    SwayTrial,
    Trend,
    apply_emg,
    apply_sway,
    mmt_value,
)
from relearn.reports.domain.render import ReportTooLarge, render

T0 = datetime(2026, 11, 2, 9, tzinfo=UTC)


def _course() -> Course:
    days = [T0 + timedelta(days=2 * i) for i in range(10)]
    c = Course(kind="discharge", patient="pat-1", care_plan="CarePlan/cp-1", plan_status="completed")
    c.plan_title = "Neuromuscular re-education"
    c.start, c.end = days[0], days[-1]
    c.goals = [
        GoalRow("g1", "Walk to the shop without my cane", "achieved", "completed", "TUG <= 12 s"),
        GoalRow("g2", "Kick a ball with my grandson", "not-achieved", "completed", "MMT 4"),
    ]
    c.patterns = [
        PatternCourse(
            "standing-balance",
            "Standing balance",
            tuple(StageStep(days[i], s) for i, s in ((0, 0), (2, 1), (4, 2), (7, 3))),
        ),
        PatternCourse(
            "knee-extension", "Knee extension (right)", (StageStep(days[0], 0), StageStep(days[3], 1))
        ),
    ]
    c.decisions = [
        DecisionRow(d, i + 2, "progressed", f"advance proprioception {i}") for i, d in enumerate(days)
    ]
    c.outcomes = [
        Trend(
            "Berg Balance Scale",
            "{score}",
            (Point(days[0], 38), Point(days[-1], 47)),
            mcid=5.0,
            verdict="improved-beyond-mcid",
        ),
        Trend(
            "Timed Up and Go",
            "s",
            (Point(days[0], 21.3), Point(days[-1], 19.0)),
            mcid=3.4,
            better="lower",
            verdict="improved-within-mcid",
        ),
    ]
    c.rom_strength = [
        Trend(
            "Knee flexion - right",
            "deg",
            (Point(days[0], 90), Point(days[-1], 118)),
            target=120,
            target_text="goal 120",
        ),
        Trend(
            "Knee extensors - right", "MMT grade (0-5)", (Point(days[0], 3.33, "3+"), Point(days[-1], 4, "4"))
        ),
    ]
    c.sway = [SwayTrial(d, f"s{i}", 3.0 - 0.2 * i, f"Observation/sw{i}") for i, d in enumerate(days)]
    c.sway_target = 2.0
    env = tuple(0.01 + (0.2 * math.exp(-(((j - 150) / 40) ** 2))) for j in range(400))
    c.emg = [
        EmgTrace(days[-1], "emg-1", ch, 10.0, env, "mV", 0.03, ("Observation/e1",))
        for ch in ("vastus medialis", "biceps femoris")
    ]
    c.adherence = [AdherenceWeek("2026-W45", 6, 5, 83.0), AdherenceWeek("2026-W46", 6, 6, 100.0)]
    c.session_days = [d.date() for d in days]
    c.gap("EMG envelopes against threshold", "one trial's envelope could not be read")
    return c


def _pages(pdf: bytes) -> list[tuple[str, np.ndarray]]:
    doc = pdfium.PdfDocument(pdf)
    out = []
    for page in doc:
        text = page.get_textpage().get_text_range()
        image = np.asarray(page.render(scale=1).to_pil().convert("L"))
        out.append((text, image))
    return out


def _ink(image: np.ndarray) -> float:
    """The share of non-white pixels in the page's plot area (below the heading band)."""
    h, w = image.shape
    area = image[int(h * 0.14) : int(h * 0.95), int(w * 0.03) : int(w * 0.97)]
    return float((area < 240).mean())


def test_each_section_is_a_page_with_its_heading_and_a_drawing() -> None:
    rendered = render(_course(), max_bytes=6_000_000)
    assert rendered.pdf.startswith(b"%PDF")
    pages = _pages(rendered.pdf)
    assert len(pages) == rendered.pages == len(SECTIONS)
    for section, (text, image) in zip(SECTIONS, pages, strict=True):
        assert section in text
        assert _ink(image) > 0.01, f"{section}: the plot area is blank"
    assert "Discharge summary" in pages[0][0]
    assert "achieved" in pages[0][0] and "not achieved" in pages[0][0]
    for heading in ("Date", "Competence stage"):
        assert heading in pages[1][0]
    for section in SECTIONS:
        assert f"<h2>{section}</h2>" in rendered.html
    assert rendered.html.count("data:image/png;base64,") == len(SECTIONS)


def test_an_empty_course_still_has_every_section_and_says_what_is_missing() -> None:
    rendered = render(Course(kind="progress", patient="p"), max_bytes=6_000_000)
    pages = _pages(rendered.pdf)
    assert [s for s in SECTIONS if not any(s in t for t, _ in pages)] == []
    assert "No balance-board trials recorded." in "".join(t for t, _ in pages)


def test_a_report_past_its_size_limit_is_refused() -> None:
    with pytest.raises(ReportTooLarge):
        render(_course(), max_bytes=70_000)


def test_inputs_are_bounded() -> None:
    c = Course(kind="progress", patient="p")
    obs = [
        {
            "id": f"o{i}",
            "device": {"reference": "Device/board"},
            "identifier": [{"system": "https://relearn.health/fhir/sid/device-stream", "value": f"s{i}"}],
            "effectivePeriod": {
                "start": (T0 + timedelta(hours=i)).isoformat(),
                "end": (T0 + timedelta(hours=i, seconds=30)).isoformat(),
            },
            "valueQuantity": {"value": 1.0 + i / 100},
        }
        for i in range(40)
    ]
    apply_sway(c, obs, Limits(max_trials=12))
    assert len(c.sway) == 12 and c.notes and not c.gaps
    emg = [
        {
            "id": "e",
            "identifier": [{"system": "https://relearn.health/fhir/sid/device-stream", "value": "emg"}],
            "bodySite": {"text": "VM"},
            "effectivePeriod": {"start": T0.isoformat(), "end": (T0 + timedelta(seconds=60)).isoformat()},
            "component": [
                {
                    "valueSampledData": {
                        "origin": {"value": 0, "unit": "mV"},
                        "period": 10,
                        "factor": 0.01,
                        "dimensions": 1,
                        "data": " ".join(["5"] * 6000),
                    }
                }
            ],
        }
    ]
    apply_emg(c, emg, Limits(max_points=300))
    assert len(c.emg) == 1 and len(c.emg[0].values) <= 300
    assert mmt_value("3+") == pytest.approx(10 / 3) and mmt_value("x") is None
