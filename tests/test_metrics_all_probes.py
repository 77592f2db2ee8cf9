"""Every metric on every LoCoMo probe: both scoring paths agree, summaries add up.

The harness scores a ranking through the corpus index (which units cover each evidence
id) when it knows each hit's corpus position, and by scanning the ranking otherwise;
both must give the same numbers on real data. How long scoring takes is measured by
``python -m memlab.bench metrics``, not asserted here.
"""

from __future__ import annotations

import pytest

from memlab.metrics import registry
from memlab.metrics.budget import BUDGETS, score_budget, text_tokens
from memlab.metrics.retrieval import (
    CorpusIndex,
    Evidence,
    coverage,
    evidence_scores,
    score_retrieval,
)
from memlab.metrics.stats import summarize_by
from memlab.testing.rankings import planted_rankings


@pytest.fixture(scope="module")
def work(locomo_dataset):
    return planted_rankings(locomo_dataset)


def test_corpus_index_path_equals_the_scan_on_every_locomo_probe(work) -> None:
    assert len(work) == 1986
    indexes: dict[int, tuple[CorpusIndex, dict[str, int], list]] = {}
    checked = 0
    for item in work:
        key = id(item.corpus)
        if key not in indexes:
            covers = [coverage(u, item.turn_sessions) for u in item.corpus]
            indexes[key] = (CorpusIndex(covers), {u.id: n for n, u in enumerate(item.corpus)},
                            covers)
        corpus, position, covers = indexes[key]
        ranked = [covers[position[u.id]] for u in item.ranked]
        evidence = Evidence.of(item.probe, item.turn_sessions)
        if len({u.id for u in item.ranked}) != len(item.ranked):
            continue  # a planted turn was also sampled: the fast path declines, tested below
        first: dict[str, dict[str, int]] = {}
        fast = evidence_scores(ranked, evidence, corpus=corpus,
                               positions=[position[u.id] for u in item.ranked],
                               first_out=first)
        scan = evidence_scores(ranked, evidence, corpus=corpus)
        assert fast == scan, item.probe.id
        tokens = [text_tokens(u.text) for u in item.ranked]
        with_first = score_budget(ranked, item.probe, tokens=tokens,
                                  turn_sessions=item.turn_sessions, first=first)
        plain = score_budget(ranked, item.probe, tokens=tokens,
                             turn_sessions=item.turn_sessions)
        assert with_first.values == plain.values, item.probe.id
        checked += 1
    assert checked > 1500


def test_a_unit_ranked_twice_falls_back_to_the_scan(work) -> None:
    item = next(w for w in work if w.probe.evidence_turn_ids)
    covers = [coverage(u, item.turn_sessions) for u in item.corpus]
    corpus = CorpusIndex(covers)
    position = {u.id: n for n, u in enumerate(item.corpus)}
    twice = item.ranked[:3] + item.ranked[:3]
    ranked = [covers[position[u.id]] for u in twice]
    evidence = Evidence.of(item.probe, item.turn_sessions)
    fast = evidence_scores(ranked, evidence, corpus=corpus,
                           positions=[position[u.id] for u in twice])
    assert fast == evidence_scores(ranked, evidence, corpus=corpus)


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
