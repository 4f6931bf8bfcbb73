"""Across services: every device metric the plan catalogue counts on is one the gateway computes and the
evaluation service's CodeSystem defines, so no mastery criterion waits for a metric nobody publishes."""

from __future__ import annotations

from relearn.device_gateway.signals.metrics import MetricCode
from relearn.evaluation.domain.codes import concepts
from relearn.plan.domain.catalogue import load_catalogue


def test_every_produced_metric_is_a_gateway_metric_code_and_an_evaluation_concept() -> None:
    produced = set(load_catalogue().produced_metrics)
    gateway = {code.value for code in MetricCode}
    assert produced - gateway == set(), "producedMetrics the gateway does not compute"
    assert produced - set(concepts()) == set(), "producedMetrics the evaluation CodeSystem does not define"


def test_every_device_criterion_of_the_catalogue_arrives_as_a_gateway_code() -> None:
    catalogue = load_catalogue()
    gateway = {code.value for code in MetricCode}
    kinds = catalogue.vocabulary.metric_kinds
    used = {c.kind for p in catalogue.patterns for c in p.mastery.checks() if c.source == "device"}
    assert used, "the catalogue has device criteria"
    for kind in sorted(used):
        assert set(kinds[kind].codes) & gateway, f"no gateway code measures '{kind}'"
