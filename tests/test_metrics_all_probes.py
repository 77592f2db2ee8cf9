"""Every metric on every LoCoMo probe: both scoring paths agree, summaries add up.

The harness scores a ranking through the corpus index (which units cover each evidence
id) when it knows each hit's corpus position, and by scanning the ranking otherwise;
both must give the same numbers on real data. How long scoring takes is measured by
``python -m memlab.bench metrics``, not asserted here.
"""

from __future__ import annotations

import pytest

from memlab.metrics import registry
from memlab.metrics.budget import BUDGETS, score_budget
from memlab.metrics.retrieval import Evidence, evidence_scores, score_retrieval
from memlab.metrics.stats import summarize_by
from memlab.testing.rankings import indexed_rankings, planted_rankings


@pytest.fixture(scope="module")
def work(locomo_dataset):
    return planted_rankings(locomo_dataset)


def test_corpus_index_path_equals_the_scan_on_every_locomo_probe(work) -> None:
    assert len(work) == 1986
    checked = 0
    for r in indexed_rankings(work):
        if r.positions is None:
            continue  # a planted turn was also sampled: the fast path declines, tested below
        evidence = Evidence.of(r.item.probe, r.item.turn_sessions)
        first: dict[str, dict[str, int]] = {}
        fast = evidence_scores(r.ranked, evidence, corpus=r.corpus, positions=r.positions,
                               first_out=first)
        scan = evidence_scores(r.ranked, evidence, corpus=r.corpus)
        assert fast == scan, r.item.probe.id
        with_first = score_budget(r.ranked, r.item.probe, tokens=r.tokens,
                                  turn_sessions=r.item.turn_sessions, first=first)
        plain = score_budget(r.ranked, r.item.probe, tokens=r.tokens,
                             turn_sessions=r.item.turn_sessions)
        assert with_first.values == plain.values, r.item.probe.id
        checked += 1
    assert checked > 1500


def test_a_unit_ranked_twice_falls_back_to_the_scan(work) -> None:
    r = next(r for r in indexed_rankings(work)
             if r.item.probe.evidence_turn_ids and r.positions is not None)
    assert r.positions is not None
    twice = r.ranked[:3] + r.ranked[:3]
    positions = r.positions[:3] * 2
    evidence = Evidence.of(r.item.probe, r.item.turn_sessions)
    fast = evidence_scores(twice, evidence, corpus=r.corpus, positions=positions)
    assert fast == evidence_scores(twice, evidence, corpus=r.corpus)


def test_all_metrics_on_all_locomo_probes(work) -> None:
    scorers = {name: registry.build(name) for name in registry.names()}
    rows = []
    for item in work:
        p = item.probe
        prediction = p.question  # a wrong but word-sharing answer
        row = {"probe_id": p.id, "category": p.category}
        row.update({n: s.score(prediction, p.answer, p) for n, s in scorers.items()})
        row.update(score_retrieval(item.ranked, p, turn_sessions=item.turn_sessions).values)
        row.update(score_budget(item.ranked, p, turn_sessions=item.turn_sessions).values)
        rows.append(row)
    recall = summarize_by(rows, "turn.recall_any@10", n_resamples=200)
    assert recall["all"].n == 1536 and recall["all"].n_excluded == 450
    assert recall["all"].mean > 0.9  # evidence was planted in the top 10 of 50
    assert summarize_by(rows, "abstention")["all"].n == 446  # answerable probes: None
    budget = summarize_by(rows, f"turn.budget_recall_any@{BUDGETS[-1]}", n_resamples=200)
    assert budget["all"].n == 1536
