"""A labelled judge set built from a dataset: responses whose correctness is known.

A judge's accuracy is only worth reading beside its measured agreement with known labels.
For each sampled probe (stratified by question type, abstention probes as their own
group) memlab writes responses whose label it knows without asking anyone:

- ``gold`` — the gold answer itself (correct);
- ``near_miss`` — the gold answer with its numbers, months or weekdays changed (wrong,
  by more than LongMemEval's tolerated off-by-one), or, when it has none, the answer of
  another probe of the same question type (wrong, but of the right form);
- ``other`` — the answer of a probe of another question type (plainly wrong);
- for abstention probes, ``abstain`` — a response saying the conversation never said it
  (correct) — and ``other`` (a concrete answer, wrong).

No paraphrases: a paraphrase's label would itself need a judge.

A judge template is developed on one split and reported on the other
(:func:`split_dataset`): LoCoMo's dev conversations are the project's tuning split
(conv-26, -30, -41, -42, -43), the held-out split the other five; elsewhere (LongMemEval:
one conversation per question) a conversation's split is fixed by a hash of its id.
"""

from __future__ import annotations

import dataclasses
import hashlib
import random
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from memlab.data.schema import Dataset, Probe
from memlab.errors import ConfigError

ABSTAIN_RESPONSES = (
    "I don't know: the conversation never mentions that.",
    "That was never said in our conversations, so I cannot tell.",
    "I'm not sure; you never told me about it.",
)
MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August",
          "September", "October", "November", "December")
WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
NUMBER = re.compile(r"\d+")
NUMBER_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine",
                "ten", "eleven", "twelve")
#: Which conversations a judge template may be developed on; the rest are held out.
DEV_CONVERSATIONS = {"locomo": ("conv-26", "conv-30", "conv-41", "conv-42", "conv-43")}
SPLITS = ("all", "dev", "heldout")


@dataclass(frozen=True)
class JudgeCase:
    """One response to judge with its known label (``correct``)."""

    probe: Probe
    response: str
    correct: bool
    kind: str  # gold, near_miss, other, abstain

    @property
    def group(self) -> str:
        return "abstention" if self.probe.abstention else self.probe.category

    def key(self) -> str:
        return f"{self.probe.id}:{self.kind}"


def build_judge_set(dataset: Dataset, per_type: int = 2, seed: int = 0) -> list[JudgeCase]:
    """``per_type`` probes of every question type (twice as many abstention probes), with
    three labelled responses each (two for abstention probes)."""
    rng = random.Random(seed)
    probes = [p for c in dataset for p in c.probes if p.answer.strip()]
    groups: dict[str, list[Probe]] = {}
    for probe in probes:
        groups.setdefault("abstention" if probe.abstention else probe.category, []).append(probe)
    cases: list[JudgeCase] = []
    for group in sorted(groups):
        members = groups[group]
        size = per_type * 2 if group == "abstention" else per_type
        for probe in rng.sample(members, min(size, len(members))):
            cases += _cases_for(probe, probes, rng)
    return cases


def split_dataset(dataset: Dataset, split: str = "all") -> Dataset:
    """``dataset`` restricted to the ``dev`` or ``heldout`` conversations (``all``: as is)."""
    if split not in SPLITS:
        raise ConfigError(f"judge-check split '{split}': expected one of {', '.join(SPLITS)}")
    if split == "all":
        return dataset
    named = DEV_CONVERSATIONS.get(dataset.name)
    kept = tuple(c for c in dataset
                 if (c.id in named if named is not None else _hash_half(c.id))
                 == (split == "dev"))
    return dataclasses.replace(dataset, conversations=kept)


def _hash_half(conversation_id: str) -> bool:
    """A fixed half of the conversations, independent of order and seed."""
    return hashlib.sha256(conversation_id.encode("utf-8")).digest()[0] % 2 == 0


def _cases_for(probe: Probe, probes: Sequence[Probe], rng: random.Random) -> list[JudgeCase]:
    other = _answer_of(probe, [p for p in probes if p.category != probe.category
                               and not p.abstention], rng)
    if probe.abstention:
        abstain = ABSTAIN_RESPONSES[rng.randrange(len(ABSTAIN_RESPONSES))]
        return [JudgeCase(probe, abstain, True, "abstain"),
                JudgeCase(probe, other, False, "other")]
    near = near_miss(probe.answer) or _answer_of(
        probe, [p for p in probes if p.category == probe.category and not p.abstention], rng)
    return [JudgeCase(probe, probe.answer, True, "gold"),
            JudgeCase(probe, near, False, "near_miss"),
            JudgeCase(probe, other, False, "other")]


def near_miss(gold: str) -> str | None:
    """``gold`` with every number, else every month or weekday, changed; None if it has none."""
    if NUMBER.search(gold):
        return NUMBER.sub(lambda m: str(_shift(int(m.group()))), gold)
    # Month and weekday names only capitalised ("They may not" is no date); number words
    # in any case.
    for names, step, flags in ((MONTHS, 4, 0), (WEEKDAYS, 3, 0),
                               (NUMBER_WORDS, 3, re.IGNORECASE)):
        pattern = re.compile(r"\b(" + "|".join(names) + r")\b", flags)
        if pattern.search(gold):
            return pattern.sub(_swapper(names, step), gold)
    return None


def _swapper(names: Sequence[str], step: int) -> Callable[[re.Match[str]], str]:
    """A ``re.sub`` callback moving a matched name ``step`` places on, keeping its case."""
    lower = [n.lower() for n in names]

    def swap(match: re.Match[str]) -> str:
        word = match.group()
        new = names[(lower.index(word.lower()) + step) % len(names)]
        return new.capitalize() if word[0].isupper() else new.lower()

    return swap


def _shift(n: int) -> int:
    """A clearly different number: years move by 3, small numbers by 3, others by half."""
    if 1900 <= n <= 2100:
        return n - 3
    return n + 3 if n < 10 else n + n // 2 + 1


def _answer_of(probe: Probe, pool: Sequence[Probe], rng: random.Random) -> str:
    """The answer of a random probe of ``pool`` that does not contain or echo ``probe``'s."""
    gold = _norm(probe.answer)
    candidates = [p.answer for p in pool if p.id != probe.id and _norm(p.answer) != gold
                  and gold not in _norm(p.answer) and _norm(p.answer) not in gold]
    if not candidates:
        return ABSTAIN_RESPONSES[0] if not probe.abstention else "Yes."
    return candidates[rng.randrange(len(candidates))]


def _norm(text: str) -> str:
    return " ".join(re.sub(r"[^\w\s]", " ", text.lower()).split())
