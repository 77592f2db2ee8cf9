"""LoCoMo's answer F1, reproduced operation for operation from LoCoMo's own scorer.

Source: snap-research/LoCoMo, ``task_eval/evaluation.py`` (commit 0e22967); line numbers
below refer to that file.

- ``normalize_answer`` (l. 84-101): ``s.replace(',', '')`` first, then, innermost first,
  ``lower`` -> remove every ``string.punctuation`` character (ASCII only; curly quotes
  stay) -> ``regex.sub(r'\\b(a|an|the|and)\\b', ' ', ...)`` (note: *and* too, l. 89,
  with the ``regex`` package, which nltk already depends on) -> ``' '.join(text.split())``.
- ``f1_score`` (l. 135-147): every normalised token is stemmed by nltk's
  ``PorterStemmer()`` (default mode ``NLTK_EXTENSIONS``; pure code, no downloaded data);
  F1 over token multisets (``Counter`` intersection); 0 when nothing overlaps,
  including when either side is empty.
- ``f1`` (l. 150-154), used for category 1 (multi-hop): the *raw* prediction and gold are
  split on ``,`` and stripped (before normalisation), each gold part takes its best
  ``f1_score`` against any prediction part, and the gold parts are averaged.
- ``eval_question_answering`` (l. 226-247): category 3 keeps the gold before the first
  ``;`` (``answer.split(';')[0].strip()``, before scoring); categories 2, 3, 4 use plain
  ``f1_score``; category 5 scores 1 when ``'no information available'`` or
  ``'not mentioned'`` is a substring of ``prediction.lower()`` (no other normalisation:
  "not  mentioned" with two spaces scores 0), else 0, whatever the gold says.

Beyond LoCoMo (its scorer raises on other categories): a probe whose ``category_id`` is
not one of LoCoMo's 1-5 gets the category-5 rule when it is an abstention probe and plain
``f1_score`` otherwise; so does a call without a probe.
"""

from __future__ import annotations

import string
from collections import Counter
from functools import lru_cache
from typing import TYPE_CHECKING, Any

import regex

from memlab.spec import Component

if TYPE_CHECKING:
    from memlab.data.schema import Probe

MULTI_HOP, TEMPORAL, OPEN_DOMAIN, SINGLE_HOP, ADVERSARIAL = 1, 2, 3, 4, 5
#: Substrings of the lowercased prediction that LoCoMo accepts for category 5 (l. 241).
ADVERSARIAL_PHRASES = ("no information available", "not mentioned")

_ARTICLES = regex.compile(r"\b(a|an|the|and)\b")
_DROP_PUNCTUATION = str.maketrans("", "", string.punctuation)


@lru_cache(maxsize=1)
def _stemmer() -> Any:
    from nltk.stem import PorterStemmer  # nltk's import is slow; only pay for it when scoring

    return PorterStemmer()


@lru_cache(maxsize=1 << 16)
def stem(token: str) -> str:
    """nltk ``PorterStemmer().stem(token)``: ``running`` and ``runs`` -> ``run``."""
    return str(_stemmer().stem(token))


@lru_cache(maxsize=1 << 14)
def normalize_answer(text: str) -> str:
    """LoCoMo's ``normalize_answer``, same steps in the same order (module doc)."""
    text = text.replace(",", "")
    text = text.lower().translate(_DROP_PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", text).split())


@lru_cache(maxsize=1 << 14)
def stemmed_tokens(text: str) -> tuple[str, ...]:
    """Normalised, Porter-stemmed tokens of ``text``."""
    return tuple(stem(w) for w in normalize_answer(text).split())


def f1_score(prediction: str, gold: str) -> float:
    """LoCoMo's ``f1_score``: stemmed token-multiset F1 (categories 2, 3, 4)."""
    pred, true = stemmed_tokens(prediction), stemmed_tokens(gold)
    same = sum((Counter(pred) & Counter(true)).values())
    if same == 0:
        return 0.0
    precision = same / len(pred)
    recall = same / len(true)
    return (2 * precision * recall) / (precision + recall)


def multi_hop_f1(prediction: str, gold: str) -> float:
    """LoCoMo's ``f1``: mean over comma-separated gold parts of the best part F1."""
    predictions = [p.strip() for p in prediction.split(",")]
    golds = [g.strip() for g in gold.split(",")]
    best = [max(f1_score(p, g) for p in predictions) for g in golds]
    return sum(best) / len(best)


def adversarial_score(prediction: str) -> float:
    """1.0 if the answer says LoCoMo's "no information available" / "not mentioned"."""
    lowered = prediction.lower()
    return 1.0 if any(phrase in lowered for phrase in ADVERSARIAL_PHRASES) else 0.0


def locomo_f1(prediction: str, gold: str, category: int | None = None,
              abstention: bool = False) -> float:
    """LoCoMo's per-question score for LoCoMo ``category`` 1-5 (None: not LoCoMo)."""
    if category is None:
        return adversarial_score(prediction) if abstention else f1_score(prediction, gold)
    if category == MULTI_HOP:
        return multi_hop_f1(prediction, gold)
    if category == OPEN_DOMAIN:
        return f1_score(prediction, gold.split(";")[0].strip())
    if category == ADVERSARIAL:
        return adversarial_score(prediction)
    if category in (TEMPORAL, SINGLE_HOP):
        return f1_score(prediction, gold)
    raise ValueError(f"LoCoMo has no category {category!r}; expected 1-5 or None")


def locomo_category(probe: Probe | None) -> int | None:
    """LoCoMo's category code of ``probe`` (1-5), or None for other datasets."""
    code = getattr(probe, "category_id", None)
    if isinstance(code, bool) or not isinstance(code, int):
        return None
    return code if MULTI_HOP <= code <= ADVERSARIAL else None


class LocomoF1(Component):
    """LoCoMo F1 exactly as LoCoMo's scorer (stemmed; per-category rules 1, 3, 5)."""

    def score(self, prediction: str, gold: str, probe: Probe | None = None) -> float:
        abstention = bool(getattr(probe, "abstention", False))
        return locomo_f1(prediction, gold, locomo_category(probe), abstention)
