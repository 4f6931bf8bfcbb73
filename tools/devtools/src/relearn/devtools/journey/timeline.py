"""The course as a readable timeline: one entry per step."""

from __future__ import annotations

from relearn.devtools.journey.reading import Step


def describe(step: Step) -> str:
    """A readable timeline entry: what happened, which rule fired, which stage was reached."""
    lines = [
        f"t+{step.started_s + step.duration_s:6.1f}s ({step.duration_s:4.1f}s)  {step.name}",
        f"    {step.summary}",
    ]
    for task in step.tasks:
        lines.append(f"    therapist approved Task/{task['id']}: {task['reason']}")
    for change in step.changes:
        lines.append(f"    CarePlan v{change.version} [{change.kind}] {change.reason}")
        if change.kind in ("progressed", "task") and change.criteria:
            lines.append(f"      evidence: {change.criteria_line()}")
    if step.stages:
        parts = []
        for pattern, stage in step.stages.items():
            levels = step.levels.get(pattern, {})
            raised = ", ".join(f"{d} {v}" for d, v in levels.items() if v) or "all at level 0"
            parts.append(f"{pattern}: {stage.replace('-', ' ')} ({raised})")
        lines.append("    stage: " + "; ".join(parts))
    if step.report is not None:
        r = step.report
        title = (r.get("code") or {}).get("text", "")
        lines.append(f"    DiagnosticReport/{r['id']} [{title}] {r.get('conclusion', '')}")
        if step.report_pdf is not None:
            lines.append(f"    PDF: {step.report_pdf}")
    return "\n".join(lines)
