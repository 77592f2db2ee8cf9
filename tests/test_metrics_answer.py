"""Exact match, set token F1, BLEU-1, abstention, the scorer registry and the judge seam."""

from __future__ import annotations

import math
import random
import warnings
from datetime import UTC, datetime
from typing import Any

import pytest

from memlab.data.schema import Probe
from memlab.errors import ConfigError, UnknownComponentError
from memlab.metrics import Scorer, mlflow_key, registry
from memlab.metrics.answer import (
    Abstention,
    abstains,
    bleu1,
    bleu_tokens,
    exact_match,
    squad_normalize,
    token_f1_set,
)
from memlab.metrics.judge import Judge, template_hash

AT = datetime(2023, 5, 8, tzinfo=UTC)


def probe(abstention: bool) -> Probe:
    return Probe("p", "q?", "gold", (), (), "c", AT, abstention=abstention)


# --- exact match (SQuAD v1.1) ----------------------------------------------------------


@pytest.mark.parametrize(("prediction", "gold", "expected"), [
    ("The Eiffel Tower!", "eiffel tower", 1.0),
    ("  an  Eiffel   tower ", "Eiffel Tower.", 1.0),
    ("cat and dog", "cat dog", 0.0),     # SQuAD keeps "and" (LoCoMo drops it)
    ("running", "runs", 0.0),            # no stemming
    ("dog cat", "cat dog", 0.0),         # order matters
    ("", "", 1.0),
])
def test_exact_match(prediction: str, gold: str, expected: float) -> None:
    assert exact_match(prediction, gold) == expected


def test_squad_normalize() -> None:
    assert squad_normalize("The U.S.A., and a cat") == "usa and cat"


# --- set-based token F1 (A-Mem / Mem0) -------------------------------------------------


@pytest.mark.parametrize(("prediction", "gold", "expected"), [
    ("cat cat dog", "cat", 2 / 3),      # sets {cat, dog} vs {cat}: P=1/2, R=1
    ("cat cat", "cat", 1.0),            # repeats count once (LoCoMo F1 gives 2/3)
    ("Paris.", "paris", 1.0),           # . , ! ? become spaces
    ("Paris, London!", "london paris", 1.0),
    ("self-care", "self care", 0.0),    # other punctuation stays in the token
    ("the cat", "a cat", 0.5),          # no article removal: {the, cat} vs {a, cat}
    ("", "paris", 0.0),
    ("berlin", "paris", 0.0),
])
def test_token_f1_set(prediction: str, gold: str, expected: float) -> None:
    assert token_f1_set(prediction, gold) == pytest.approx(expected)


# --- BLEU-1 ----------------------------------------------------------------------------


def test_bleu1_hand_computed() -> None:
    # 3 of 3 unigrams match; c=3 < r=6: BP = exp(1 - 6/3) = e^-1
    assert bleu1("the cat sat", "the cat sat on the mat") == pytest.approx(math.exp(-1))
    # clipped: "the" counts at most once (once in the reference); c=4 > r=2: BP = 1
    assert bleu1("the the the the", "the cat") == pytest.approx(0.25)
    assert bleu1("The Cat", "the cat") == 1.0
    assert bleu1("dog", "cat") == 0.0
    assert bleu1("", "cat") == 0.0


def test_bleu_tokens_are_treebank_words_of_lowercased_text() -> None:
    assert bleu_tokens("Don't go, Bob!") == ("do", "n't", "go", ",", "bob", "!")


def test_bleu1_equals_nltk_sentence_bleu_with_unigram_weights() -> None:
    from nltk.translate.bleu_score import SmoothingFunction, sentence_bleu

    words = ["the", "cat", "sat", "on", "mat", "a", "dog", ".", ",", "!", "'s", "don't",
             "Paris", "2023"]
    rng = random.Random(7)
    smooth = SmoothingFunction().method1
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # nltk warns about the zero-weight higher orders
        for _ in range(500):
            hyp = " ".join(rng.choice(words) for _ in range(rng.randint(0, 7)))
            ref = " ".join(rng.choice(words) for _ in range(rng.randint(1, 7)))
            expected = sentence_bleu([list(bleu_tokens(ref))], list(bleu_tokens(hyp)),
                                     weights=(1, 0, 0, 0), smoothing_function=smooth)
            assert bleu1(hyp, ref) == pytest.approx(expected, abs=1e-12), (hyp, ref)


# --- abstention ------------------------------------------------------------------------


@pytest.mark.parametrize("text", [
    "Not mentioned in the conversation",
    "The conversation never mentioned it.",
    "That wasn\u2019t mentioned.",
    "No information available",
    "There is not enough information to answer.",
    "Caroline didn't mention her charity race.",
    "I don't know",
    "This cannot be answered from the conversation.",
    "Unknown.",
    "It was not specified.",
])
def test_abstaining_answers(text: str) -> None:
    assert abstains(text)


@pytest.mark.parametrize("text", [
    "Paris", "She mentioned Paris twice.", "an unknown artist painted it", "7 May 2023", "",
])
def test_answers_that_do_not_abstain(text: str) -> None:
    assert not abstains(text)


def test_abstention_scorer() -> None:
    skip, penalize = Abstention(), Abstention(answerable="penalize")
    assert skip.score("Not mentioned.", "n/a", probe(True)) == 1.0
    assert skip.score("Paris", "n/a", probe(True)) == 0.0
    assert skip.score("Paris", "Paris", probe(False)) is None  # not applicable: excluded
    assert penalize.score("Paris", "Paris", probe(False)) == 1.0
    assert penalize.score("I don't know", "Paris", probe(False)) == 0.0
    assert penalize.params() == {"answerable": "penalize"}
    with pytest.raises(ConfigError, match="answerable"):
        registry.build("abstention", {"answerable": "ignore"})
    decision = registry.build("abstention_decision")  # the same, as a config's scorer name
    assert decision.params() == {}
    assert [decision.score(a, g, probe(p)) for a, g, p in (
        ("Paris", "Paris", False), ("I don't know", "Paris", False),
        ("Not mentioned.", "n/a", True), ("Paris", "n/a", True))] == [1.0, 0.0, 1.0, 0.0]


# --- registry ----------------------------------------------------------------------------


def test_registry_names_and_builds() -> None:
    assert registry.names() == ["abstention", "abstention_decision", "bleu1", "exact_match",
                                "locomo_f1", "token_f1_set"]
    for name in registry.names():
        scorer = registry.build(name)
        assert isinstance(scorer, Scorer)
        assert isinstance(scorer.params(), dict)
        value = scorer.score("The cat", "the cat", probe(False))
        assert value is None or 0.0 <= value <= 1.0
    assert registry.build("locomo_f1").score("running", "runs") == 1.0
    assert registry.build("exact_match").score("running", "runs") == 0.0


def test_registry_unknown_name_suggests() -> None:
    with pytest.raises(UnknownComponentError, match="locomo_f1"):
        registry.get("locomo-f1")
    assert [r["name"] for r in registry.describe()] == registry.names()


# --- names and the judge seam ----------------------------------------------------------


def test_mlflow_key() -> None:
    assert mlflow_key("turn.recall_any@5") == "turn.recall_any_at_5"
    assert mlflow_key("session.budget_evidence_recall@2000") == (
        "session.budget_evidence_recall_at_2000")
    assert mlflow_key("locomo_f1/multi-hop") == "locomo_f1/multi-hop"
    assert mlflow_key("p95 (s)?") == "p95 _s__"


class VerbOnly:
    """Has the judging verb but not ``params()``: not a Judge."""

    def judge(self, probe: Probe, answer: str) -> dict[str, Any]:
        return {"judge_score": 1.0, "judge_record": {}}


def test_judge_seam() -> None:
    # the real judge is checked in tests/test_judge_check.py (it needs an LLM backend)
    assert not isinstance(VerbOnly(), Judge)
    assert template_hash("abc") == "ba7816bf8f01cfea"  # sha256("abc")[:16]
