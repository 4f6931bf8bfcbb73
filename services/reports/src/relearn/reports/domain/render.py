"""A course drawn as a report: one page per section (PDF, matplotlib, no screen) and the same as HTML.

Figures are built with ``matplotlib.figure.Figure`` directly (the Agg and PDF canvases, never pyplot's
global state or a display), so reports render side by side in threads. Each page has its section heading
(``course.SECTIONS``) as real text, axis labels and a legend; a section with nothing recorded says so on its
page rather than disappearing.
"""

from __future__ import annotations

import base64
import io
import textwrap
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from html import escape
from typing import Any

import matplotlib

matplotlib.use("Agg")  # no screen; set before any canvas is made

from matplotlib import dates as mdates
from matplotlib.backends.backend_pdf import PdfPages
from matplotlib.figure import Figure
from matplotlib.patches import Circle, Rectangle

from relearn.reports.domain.course import (
    SECTIONS,
    STAGE_LABELS,
    Course,
    Trend,
)

matplotlib.use("Agg")  # no screen: figures are drawn on the Agg and PDF canvases only

PAGE = (11.69, 8.27)  # A4 landscape, inches
PNG_DPI = 64  # the HTML view's page images (the PDF is vector)
_ACHIEVED_COLOURS = {"achieved": "#2e7d32", "not-achieved": "#c62828"}


class ReportTooLarge(ValueError):
    """The rendered report exceeds the configured size."""


@dataclass(frozen=True)
class Rendered:
    pdf: bytes
    html: str
    pages: int


def _page(course: Course, section: str) -> Figure:
    fig = Figure(figsize=PAGE)
    fig.suptitle(section, fontsize=16, fontweight="bold", x=0.03, ha="left")
    fig.text(
        0.97,
        0.965,
        f"{course.title} - Patient/{course.patient}",
        ha="right",
        va="center",
        fontsize=9,
        color="#555555",
    )
    return fig


def _empty(fig: Figure, message: str) -> None:
    ax: Any = fig.add_subplot(1, 1, 1)
    ax.set_axis_off()
    ax.text(0.5, 0.5, message, ha="center", va="center", fontsize=13, color="#777777", wrap=True)


def _date_axis(ax: Any) -> None:
    ax.xaxis.set_major_formatter(mdates.DateFormatter("%d %b"))  # type: ignore[no-untyped-call]
    for label in ax.get_xticklabels():
        label.set_rotation(30)
        label.set_ha("right")


def _grid(n: int) -> tuple[int, int]:
    cols = 1 if n == 1 else 2 if n <= 4 else 3
    return (n + cols - 1) // cols, cols


def _fmt(at: datetime | None) -> str:
    return at.strftime("%d %b %Y") if at else "-"


# -- pages --------------------------------------------------------------------------------------------------


def summary_page(course: Course) -> Figure:
    fig = _page(course, SECTIONS[0])
    met, total = course.goals_met()
    lines = [
        f"Patient: Patient/{course.patient}",
        f"Plan: {course.plan_title or '-'} ({course.care_plan or 'no plan found'}), "
        f"status {course.plan_status or '-'}",
        f"Course: {_fmt(course.start)} to {_fmt(course.end)}",
        f"Generated: {datetime.now(UTC).strftime('%d %b %Y %H:%M UTC')}",
        f"Goals achieved: {met} of {total}",
    ]
    y = 0.88
    for line in lines:
        fig.text(0.04, y, line, fontsize=11)
        y -= 0.04
    y -= 0.02
    fig.text(0.04, y, "Goals", fontsize=13, fontweight="bold")
    y -= 0.045
    for g in course.goals[:12]:
        colour = _ACHIEVED_COLOURS.get(g.achievement, "#1565c0")
        fig.text(0.04, y, g.achievement.replace("-", " "), fontsize=10, color=colour, fontweight="bold")
        text = g.description + (f"  [target: {g.targets}]" if g.targets else "")
        fig.text(0.19, y, textwrap.shorten(text, 130), fontsize=10)
        y -= 0.035
    if not course.goals:
        fig.text(0.04, y, "No goals recorded.", fontsize=10, color="#777777")
        y -= 0.035
    y -= 0.02
    fig.text(0.04, y, "At a glance", fontsize=13, fontweight="bold")
    y -= 0.045
    for line in _glance(course)[:9]:
        fig.text(0.04, y, textwrap.shorten(line, 160), fontsize=10)
        y -= 0.032
    y -= 0.02
    fig.text(0.04, y, "Gaps (data the report could not read or draw)", fontsize=13, fontweight="bold")
    y -= 0.045
    for gap in course.gaps[:10]:
        text = textwrap.shorten(f"{gap.section}: {gap.what}", 150)
        fig.text(0.04, y, text, fontsize=10, color="#b26a00")
        y -= 0.032
    if not course.gaps:
        fig.text(0.04, y, "None: every section was read.", fontsize=10, color="#777777")
        y -= 0.032
    if course.notes:
        y -= 0.02
        fig.text(0.04, y, "Notes (read, but bounded in what is drawn)", fontsize=13, fontweight="bold")
        y -= 0.045
        for note in course.notes[:6]:
            fig.text(
                0.04, y, textwrap.shorten(f"{note.section}: {note.what}", 150), fontsize=10, color="#555555"
            )
            y -= 0.032
    return fig


def _glance(course: Course) -> list[str]:
    """The course in a few lines: stage reached per pattern, outcome measures against MCID, adherence."""
    lines = [f"{p.label}: {STAGE_LABELS[p.steps[-1].stage].lower()} now" for p in course.patterns if p.steps]
    for t in course.outcomes:
        first, last = t.points[0], t.points[-1]
        mcid = f" (MCID {t.mcid:g})" if t.mcid is not None else ""
        lines.append(f"{t.label}: {first.value:g} to {last.value:g} {t.unit}, {t.verdict_text}{mcid}")
    done = [w.percent for w in course.adherence if w.percent is not None and w.prescribed > 0]
    if done or course.session_days:
        mean = f"mean weekly adherence {sum(done) / len(done):.0f} %" if done else "no prescription"
        lines.append(f"{len(course.session_days)} clinic session days; {mean} over {len(done)} weeks")
    if course.sway:
        lines.append(
            f"Sway ellipse area: {course.sway[0].area_cm2:.2f} to {course.sway[-1].area_cm2:.2f} cm² "
            f"over {len(course.sway)} trials"
        )
    return lines or ["Nothing recorded yet."]


def stages_page(course: Course) -> Figure:
    fig = _page(course, SECTIONS[1])
    if not course.patterns:
        _empty(fig, "No competence stages recorded (no plan versions with exercises).")
        return fig
    ax: Any = fig.add_subplot(1, 1, 1)
    end = course.end or max(s.at for p in course.patterns for s in p.steps)
    for i, p in enumerate(course.patterns):
        xs = [s.at for s in p.steps] + [end]
        ys = [s.stage + (i - len(course.patterns) / 2) * 0.04 for s in p.steps]
        ys.append(ys[-1])
        ax.step(
            xs, ys, where="post", linewidth=2.2, label=p.label, marker="o", markevery=list(range(len(xs) - 1))
        )
    ax.set_yticks(range(len(STAGE_LABELS)), STAGE_LABELS)
    ax.set_ylim(-0.5, len(STAGE_LABELS) - 0.5)
    ax.set_xlabel("Date")
    ax.set_ylabel("Competence stage")
    ax.grid(True, axis="y", alpha=0.3)
    _date_axis(ax)
    ax.legend(loc="upper left", fontsize=9, title="Movement pattern")
    fig.subplots_adjust(left=0.2, right=0.97, bottom=0.15, top=0.88)
    return fig


def _decision_colour(kind: str, reason: str) -> str:
    if kind == "symptoms" or "regress" in reason.lower():
        return "#c62828"  # held back or regressed
    if kind in ("progressed", "reassessed", "discharged"):
        return "#2e7d32"
    return "black"


def decisions_pages(course: Course, per_page: int = 14) -> list[Figure]:
    rows = course.decisions
    if not rows:
        fig = _page(course, SECTIONS[2])
        _empty(fig, "No plan changes after drafting.")
        return [fig]
    pages: list[Figure] = []
    for start in range(0, len(rows), per_page):
        fig = _page(course, SECTIONS[2] + (" (continued)" if start else ""))
        fig.text(0.04, 0.9, "Date", fontweight="bold", fontsize=10)
        fig.text(0.13, 0.9, "Version", fontweight="bold", fontsize=10)
        fig.text(0.19, 0.9, "Change", fontweight="bold", fontsize=10)
        fig.text(0.28, 0.9, "Reason (the plan engine's decision)", fontweight="bold", fontsize=10)
        y = 0.86
        for r in rows[start : start + per_page]:
            fig.text(0.04, y, r.at.strftime("%d %b %Y"), fontsize=8.5, va="top")
            fig.text(0.13, y, str(r.version), fontsize=8.5, va="top")
            fig.text(0.19, y, r.kind, fontsize=8.5, color=_decision_colour(r.kind, r.reason), va="top")
            reason = "\n".join(textwrap.wrap(r.reason, 150, max_lines=2, placeholder=" [...]"))
            fig.text(0.28, y, reason, fontsize=8, va="top", linespacing=1.3)
            y -= 0.058
        pages.append(fig)
    return pages


def _trend_axis(fig: Figure, idx: int, grid: tuple[int, int], t: Trend, *, mcid_band: bool) -> None:
    ax: Any = fig.add_subplot(grid[0], grid[1], idx)
    xs = [p.at for p in t.points]
    ys = [p.value for p in t.points]
    ax.plot(xs, ys, marker="o", linewidth=2, color="#1565c0", label="measured")
    for p in t.points:
        if p.text:
            ax.annotate(
                p.text, (p.at, p.value), textcoords="offset points", xytext=(0, 6), fontsize=8, ha="center"
            )
    if mcid_band and t.mcid is not None and ys:
        sign = 1 if t.better == "higher" else -1
        ax.axhspan(
            min(ys[0], ys[0] + sign * t.mcid),
            max(ys[0], ys[0] + sign * t.mcid),
            color="#ffb300",
            alpha=0.2,
            label=f"baseline to MCID ({t.mcid:g} {t.unit})",
        )
    if t.target is not None:
        ax.axhline(t.target, color="#2e7d32", linestyle="--", label=t.target_text or f"goal {t.target:g}")
    ax.set_title(f"{textwrap.shorten(t.label, 48)}\n{t.verdict_text}", fontsize=10)
    ax.set_xlabel("Date", fontsize=8)
    ax.set_ylabel(t.unit or "value", fontsize=8)
    ax.tick_params(labelsize=7)
    if len(xs) == 1:
        ax.set_xlim(xs[0] - timedelta(days=3), xs[0] + timedelta(days=3))
    _date_axis(ax)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7, loc="best")


def trends_page(course: Course, section: str, trends: list[Trend], *, mcid_band: bool, empty: str) -> Figure:
    fig = _page(course, section)
    shown = trends[:9]
    if not shown:
        _empty(fig, empty)
        return fig
    grid = _grid(len(shown))
    for i, t in enumerate(shown, start=1):
        _trend_axis(fig, i, grid, t, mcid_band=mcid_band)
    if len(trends) > len(shown):
        fig.text(0.5, 0.01, f"{len(trends) - len(shown)} more series not drawn", ha="center", fontsize=8)
    fig.subplots_adjust(left=0.07, right=0.98, bottom=0.1, top=0.86, hspace=0.75, wspace=0.3)
    return fig


def sway_page(course: Course) -> Figure:
    fig = _page(course, SECTIONS[5])
    if not course.sway:
        _empty(fig, "No balance-board trials recorded.")
        return fig
    cmap = matplotlib.colormaps["viridis"]
    n = len(course.sway)
    left: Any = fig.add_subplot(1, 2, 1)
    radius_max = 0.0
    for i, t in enumerate(course.sway):
        r = (t.area_cm2 / 3.141592653589793) ** 0.5
        radius_max = max(radius_max, r)
        left.add_patch(
            Circle(
                (0, 0),
                r,
                fill=False,
                linewidth=1.8,
                color=cmap(i / max(1, n - 1)),
                label=f"{t.at:%d %b} {t.area_cm2:.2f} cm²",
            )
        )
    if course.sway_target is not None:
        rt = (course.sway_target / 3.141592653589793) ** 0.5
        radius_max = max(radius_max, rt)
        left.add_patch(
            Circle(
                (0, 0),
                rt,
                fill=False,
                linestyle="--",
                color="#c62828",
                label=f"target {course.sway_target:g} cm²",
            )
        )
    lim = radius_max * 1.15 or 1.0
    left.set_xlim(-lim, lim)
    left.set_ylim(-lim, lim)
    left.set_aspect("equal")
    left.set_xlabel("Medio-lateral (cm)")
    left.set_ylabel("Antero-posterior (cm)")
    left.set_title("95 % ellipse per trial, drawn as the circle of equal area", fontsize=10)
    left.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    right: Any = fig.add_subplot(1, 2, 2)
    labels = [f"{t.at:%d %b}\n#{i + 1}" for i, t in enumerate(course.sway)]
    right.bar(
        range(n),
        [t.area_cm2 for t in course.sway],
        color=[cmap(i / max(1, n - 1)) for i in range(n)],
        label="ellipse area",
    )
    if course.sway_target is not None:
        right.axhline(
            course.sway_target, color="#c62828", linestyle="--", label=f"target {course.sway_target:g} cm²"
        )
    right.set_xticks(range(n), labels, fontsize=7)
    right.set_xlabel("Trial")
    right.set_ylabel("95 % ellipse area (cm²)")
    right.set_title("Ellipse area per trial", fontsize=10)
    right.legend(fontsize=8)
    fig.subplots_adjust(left=0.08, right=0.98, bottom=0.15, top=0.86, wspace=0.55)
    return fig


def emg_page(course: Course) -> Figure:
    fig = _page(course, SECTIONS[6])
    if not course.emg:
        _empty(fig, "No EMG envelopes recorded.")
        return fig
    streams: list[str] = []
    for t in course.emg:
        if t.stream not in streams:
            streams.append(t.stream)
    grid = _grid(len(streams))
    for i, stream in enumerate(streams, start=1):
        ax: Any = fig.add_subplot(grid[0], grid[1], i)
        traces = [t for t in course.emg if t.stream == stream]
        for k, t in enumerate(traces):
            colour = f"C{k}"
            xs = [j * t.period_ms / 1000 for j in range(len(t.values))]
            ax.plot(xs, t.values, color=colour, linewidth=1.2, label=textwrap.shorten(t.channel, 40))
            if t.threshold is not None:
                ax.axhline(
                    t.threshold,
                    color=colour,
                    linestyle="--",
                    linewidth=1,
                    label=f"onset threshold ({t.threshold:.3g} {t.unit})",
                )
        ax.set_title(f"Trial of {traces[0].at:%d %b %Y %H:%M}", fontsize=10)
        ax.set_xlabel("Time in trial (s)", fontsize=8)
        ax.set_ylabel(f"Linear envelope ({traces[0].unit})", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7, loc="upper right")
    fig.text(
        0.5,
        0.01,
        "Threshold: the envelope's baseline mean + 3 SD over its first 0.5 s.",
        ha="center",
        fontsize=8,
    )
    fig.subplots_adjust(left=0.07, right=0.98, bottom=0.1, top=0.86, hspace=0.6, wspace=0.25)
    return fig


def adherence_page(course: Course) -> Figure:
    fig = _page(course, SECTIONS[7])
    days = course.session_days
    weeks_pct = {w.week: w for w in course.adherence}
    spans = [s for w in course.adherence if (s := _week_days(w.week)) is not None]
    if not days and not spans:
        _empty(fig, "No sessions and no adherence recorded.")
        return fig
    first_day = min([*days, *(s[0] for s in spans)])
    last_day = max([*days, *(s[1] for s in spans)])
    monday = first_day - timedelta(days=first_day.weekday())
    n_weeks = min(26, (last_day - monday).days // 7 + 1)
    ax: Any = fig.add_subplot(1, 1, 1)
    done = set(days)
    for w in range(n_weeks):
        week_start = monday + timedelta(weeks=w)
        iso = week_start.isocalendar()
        key = f"{iso[0]}-W{iso[1]:02d}"
        for d in range(7):
            day = week_start + timedelta(days=d)
            colour = "#2e7d32" if day in done else "#eeeeee"
            ax.add_patch(Rectangle((d, -w), 0.92, 0.92, color=colour))
            ax.text(
                d + 0.46,
                -w + 0.46,
                f"{day:%d}",
                ha="center",
                va="center",
                fontsize=7,
                color="white" if day in done else "#555555",
            )
        adh = weeks_pct.get(key)
        text = f"{key}: " + (
            f"{adh.percent:.0f} % ({adh.done:g}/{adh.prescribed:g} bouts)"
            if adh and adh.percent is not None
            else "no prescription"
        )
        ax.text(7.2, -w + 0.46, text, va="center", fontsize=8)
    ax.set_xlim(0, 10.5)
    ax.set_ylim(-n_weeks + 0.9, 1.0)
    ax.set_aspect("equal")
    ax.set_xticks([d + 0.46 for d in range(7)], ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"])
    ax.set_yticks(
        [-w + 0.46 for w in range(n_weeks)],
        [f"{monday + timedelta(weeks=w):%d %b}" for w in range(n_weeks)],
        fontsize=7,
    )
    ax.set_xlabel("Day of week (green: a clinic session)")
    ax.set_ylabel("Week starting")
    for side in ("top", "right", "bottom", "left"):
        ax.spines[side].set_visible(False)
    ax.tick_params(length=0)
    ax.legend(
        handles=[
            Rectangle((0, 0), 1, 1, color="#2e7d32", label="session"),
            Rectangle((0, 0), 1, 1, color="#eeeeee", label="no session"),
        ],
        loc="lower right",
        fontsize=8,
    )
    ax.set_title("Weekly adherence against the plan version in force that week (right)", fontsize=10)
    fig.subplots_adjust(left=0.1, right=0.98, bottom=0.1, top=0.86)
    return fig


def _week_days(week: str) -> tuple[date, date] | None:
    """Monday and Sunday of an ISO week ``2026-W02``; None when unreadable."""
    try:
        year, w = week.split("-W")
        return date.fromisocalendar(int(year), int(w), 1), date.fromisocalendar(int(year), int(w), 7)
    except ValueError:
        return None


# -- the whole report ---------------------------------------------------------------------------------------


def figures(course: Course) -> list[tuple[str, Figure]]:
    """(section, figure) per page, in order."""
    builders: list[tuple[str, Callable[[], list[Figure]]]] = [
        (SECTIONS[0], lambda: [summary_page(course)]),
        (SECTIONS[1], lambda: [stages_page(course)]),
        (SECTIONS[2], lambda: decisions_pages(course)),
        (
            SECTIONS[3],
            lambda: [
                trends_page(
                    course,
                    SECTIONS[3],
                    course.outcomes,
                    mcid_band=True,
                    empty="No standard outcome measures recorded.",
                )
            ],
        ),
        (
            SECTIONS[4],
            lambda: [
                trends_page(
                    course,
                    SECTIONS[4],
                    course.rom_strength,
                    mcid_band=False,
                    empty="No range of motion or strength recorded.",
                )
            ],
        ),
        (SECTIONS[5], lambda: [sway_page(course)]),
        (SECTIONS[6], lambda: [emg_page(course)]),
        (SECTIONS[7], lambda: [adherence_page(course)]),
    ]
    return [(section, fig) for section, build in builders for fig in build()]


def _png(fig: Figure) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=PNG_DPI)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def render(course: Course, *, max_bytes: int) -> Rendered:
    """The report as PDF (one page per section, more for a long decision list) and as HTML (the same pages
    as PNG images, with the decisions and gaps as text); ReportTooLarge past ``max_bytes`` together."""
    pages = figures(course)
    pdf_buf = io.BytesIO()
    with PdfPages(
        pdf_buf,
        metadata={"Title": f"{course.title} - Patient/{course.patient}", "Creator": "Relearn reports"},
    ) as pdf:
        for _, fig in pages:
            pdf.savefig(fig)
    pdf_bytes = pdf_buf.getvalue()
    html = _html(course, [(s, _png(f)) for s, f in pages])
    size = len(pdf_bytes) + len(html.encode())
    if size > max_bytes:
        raise ReportTooLarge(f"the report is {size} bytes, above the {max_bytes} allowed")
    return Rendered(pdf_bytes, html, len(pages))


def _html(course: Course, images: list[tuple[str, str]]) -> str:
    met, total = course.goals_met()
    goals = "".join(
        f"<tr><td>{escape(g.description)}</td><td>{escape(g.targets)}</td><td>{escape(g.achievement)}</td></tr>"
        for g in course.goals
    )
    decisions = "".join(
        f"<tr><td>{r.at:%Y-%m-%d}</td><td>{r.version}</td><td>{escape(r.kind)}</td><td>{escape(r.reason)}</td></tr>"
        for r in course.decisions
    )
    gaps = "".join(f"<li>{escape(g.section)}: {escape(g.what)}</li>" for g in course.gaps) or "<li>none</li>"
    notes = (
        "".join(f"<li>{escape(g.section)}: {escape(g.what)}</li>" for g in course.notes) or "<li>none</li>"
    )
    body = [
        f"<h1>{escape(course.title)}</h1>",
        f"<p>Patient/{escape(course.patient)} &middot; {escape(course.care_plan or 'no plan')} "
        f"({escape(course.plan_status or '-')}) &middot; {_fmt(course.start)} to {_fmt(course.end)} &middot; "
        f"goals achieved {met} of {total}</p>",
        f"<h2>{escape(SECTIONS[0])}</h2><table><tr><th>Goal</th><th>Target</th><th>Status</th></tr>{goals}</table>",
        f"<h3>Gaps</h3><ul>{gaps}</ul><h3>Notes</h3><ul>{notes}</ul>",
        f"<h2>{escape(SECTIONS[2])}</h2><table><tr><th>Date</th><th>Version</th><th>Change</th><th>Reason</th></tr>"
        f"{decisions}</table>",
    ]
    seen: set[str] = set()
    for section, png in images:
        heading = "" if section in seen else f"<h2>{escape(section)}</h2>"
        seen.add(section)
        body.append(f'{heading}<img alt="{escape(section)}" src="data:image/png;base64,{png}"/>')
    style = (
        "body{font-family:sans-serif;max-width:1000px;margin:auto}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:3px 6px;font-size:13px;text-align:left}img{width:100%}"
    )
    return (
        f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{escape(course.title)}</title>'
        f"<style>{style}</style></head><body>{''.join(body)}</body></html>"
    )
