"""Answer metrics other papers report, each under its own name and definition.

- ``exact_match``: SQuAD v1.1's ``normalize_answer`` (``evaluate-v1.1.py``: lowercase,
  drop ASCII punctuation, remove the words a / an / the, collapse whitespace) on both
  sides, then string equality. No stemming, and *and* is kept (unlike LoCoMo).
- ``token_f1_set``: the *set*-based token F1 of A-Mem (Xu et al. 2025,
  AgenticMemory ``utils.py``) as reused by Mem0's evaluation
  (mem0ai/mem0 ``evaluation/metrics/utils.py``, ``calculate_metrics``): lowercase, replace
  ``. , ! ?`` with spaces, split on whitespace, F1 of the two token *sets*; 0 when either
  side is empty. Repeated words count once, so it differs from LoCoMo's multiset F1.
- ``bleu1``: BLEU with weights (1, 0, 0, 0) against one reference, i.e. brevity penalty
  x clipped unigram precision (Papineni et al. 2002), as A-Mem/Mem0 compute it with nltk's
  ``sentence_bleu(weights=(1, 0, 0, 0), smoothing_function=method1)``: smoothing never
  changes BLEU-1 (a hypothesis without any matching unigram scores 0 before smoothing
  applies, and higher orders weigh 0), so this closed form equals nltk's value (the tests
  check it). Tokens: nltk's ``NLTKWordTokenizer`` on the lowercased text. A-Mem/Mem0 call
  ``nltk.word_tokenize``, which first splits sentences with the downloadable punkt
  model; memlab stays offline and skips that step, which only changes tokens in
  multi-sentence answers (a sentence-final period inside the text stays attached).
- ``abstention``: a heuristic for answers that say the conversation never mentioned
  it (phrases in ``ABSTAIN_PATTERNS``); the LLM judge is the real measure.
"""

from __future__ import annotations

import math
import re
import string
from collections import Counter
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from memlab.spec import Component

if TYPE_CHECKING:
    from memlab.data.schema import Probe

_SQUAD_ARTICLES = re.compile(r"\b(a|an|the)\b")
_DROP_PUNCTUATION = str.maketrans("", "", string.punctuation)
_SET_F1_SEPARATORS = str.maketrans({".": " ", ",": " ", "!": " ", "?": " "})


def squad_normalize(text: str) -> str:
    """SQuAD v1.1 ``normalize_answer``."""
    text = text.lower().translate(_DROP_PUNCTUATION)
    return " ".join(_SQUAD_ARTICLES.sub(" ", text).split())


def exact_match(prediction: str, gold: str) -> float:
    """1.0 when the SQuAD-normalised strings are equal."""
    return float(squad_normalize(prediction) == squad_normalize(gold))


def set_tokens(text: str) -> set[str]:
    """A-Mem/Mem0 ``simple_tokenize`` as a set."""
    return set(str(text).lower().translate(_SET_F1_SEPARATORS).split())


def token_f1_set(prediction: str, gold: str) -> float:
    """F1 of the token *sets* (A-Mem / Mem0 ``f1``)."""
    pred, true = set_tokens(prediction), set_tokens(gold)
    if not pred or not true:
        return 0.0
    common = len(pred & true)
    if common == 0:
        return 0.0
    precision, recall = common / len(pred), common / len(true)
    return 2 * precision * recall / (precision + recall)


@lru_cache(maxsize=1)
def _word_tokenizer() -> Any:
    from nltk.tokenize.destructive import NLTKWordTokenizer

    return NLTKWordTokenizer()


@lru_cache(maxsize=1 << 14)
def bleu_tokens(text: str) -> tuple[str, ...]:
    """Lowercased Treebank-style word tokens (nltk ``word_tokenize`` without punkt)."""
    return tuple(_word_tokenizer().tokenize(text.lower()))


def bleu1(prediction: str, gold: str) -> float:
    """Sentence BLEU-1: brevity penalty x clipped unigram precision (one reference)."""
    hyp, ref = bleu_tokens(prediction), bleu_tokens(gold)
    matches = sum((Counter(hyp) & Counter(ref)).values())
    if matches == 0:
        return 0.0
    c, r = len(hyp), len(ref)
    penalty = 1.0 if c > r else math.exp(1 - r / c)
    return penalty * matches / c


#: Ways an answer says the conversation never covered the question (lowercase, ' quotes).
ABSTAIN_PATTERNS = (
    r"\bno information available\b",
    r"\b(?:not|never|nowhere|wasn't|isn't) (?:\w+ )?mentioned\b",
    r"\bno mention\b",
    r"\b(?:did|does|do)(?:n't| not) (?:\w+ )?mention\b",
    r"\bno (?:relevant |such )?information\b",
    r"\b(?:not|insufficient) (?:enough |sufficient )?information\b",
    r"\bnot (?:specified|stated|discussed|provided|recorded|covered)\b",
    r"\bnever (?:said|says|discussed|talked about|stated|brought up)\b",
    r"\b(?:did|does|do)(?:n't| not) (?:say|specify|discuss|talk about)\b",
    r"\b(?:i|we) (?:don't|do not) know\b",
    r"\b(?:cannot|can't|can not) (?:be )?(?:answer|answered|determine|determined|tell)\b",
    r"\bunanswerable\b",
    r"^\W*unknown\W*$",
)
_ABSTAINS = re.compile("|".join(ABSTAIN_PATTERNS))


def abstains(prediction: str) -> bool:
    """True when the answer declines because the conversation never said (heuristic)."""
    text = " ".join(prediction.lower().replace("\u2019", "'").split())
    return _ABSTAINS.search(text) is not None


class ExactMatch(Component):
    """Exact match after SQuAD v1.1 normalisation."""

    def score(self, prediction: str, gold: str, probe: Probe | None = None) -> float:
        return exact_match(prediction, gold)


class TokenF1Set(Component):
    """Set-based token F1 as A-Mem and Mem0 report it (no stemming, no multiset)."""

    def score(self, prediction: str, gold: str, probe: Probe | None = None) -> float:
        return token_f1_set(prediction, gold)


class Bleu1(Component):
    """Sentence BLEU-1 (brevity penalty x unigram precision) as A-Mem and Mem0 report it."""

    def score(self, prediction: str, gold: str, probe: Probe | None = None) -> float:
        return bleu1(prediction, gold)


class Abstention(Component):
    """Did the answer abstain (say it was never mentioned)? Heuristic phrase match.

    On abstention probes it scores 1.0 for an abstaining answer. On answerable probes it
    returns None (not applicable) unless ``answerable="penalize"``, which scores 1.0 for
    *not* abstaining, so the mean over all probes is abstention-decision accuracy.
    """

    def __init__(self, answerable: str = "skip") -> None:
        if answerable not in ("skip", "penalize"):
            raise ValueError(f"answerable must be 'skip' or 'penalize', got {answerable!r}")
        self.answerable = answerable

    def score(self, prediction: str, gold: str, probe: Probe | None = None) -> float | None:
        said_never = abstains(prediction)
        if probe is not None and probe.abstention:
            return float(said_never)
        return float(not said_never) if self.answerable == "penalize" else None


class AbstentionDecision(Abstention):
    """Abstention-decision accuracy: 1.0 for abstaining on an abstention probe and for
    answering an answerable one (``abstention`` with ``answerable="penalize"``, as a
    scorer name: a config's ``scorers:`` are names)."""

    def __init__(self) -> None:
        super().__init__(answerable="penalize")
