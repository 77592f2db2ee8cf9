"""The seam for LLM judges (LongMemEval-style yes/no); the implementation is
:class:`memlab.eval.answer.LLMJudge`.

A judge asks an LLM whether an answer is correct, with a prompt chosen per question type
and abstention probes judged as abstention (did the answer say the question cannot be
answered from the conversation?). Its number is only meaningful with the judge's identity
beside it, so every verdict carries a ``judge_record`` logged per item: the backend, the
model and the digest of its exact weights, the template's name, version and rendered
prompt hash, and the sampling temperature (:data:`RECORD_FIELDS`), beside the raw reply.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Any, Protocol, TypedDict, runtime_checkable

if TYPE_CHECKING:
    from memlab.data.schema import Probe

#: What every ``judge_record`` holds to name who judged (and, with the reply, reproduce it).
RECORD_FIELDS = ("backend", "model", "digest", "template", "template_version",
                 "prompt_sha256", "temperature")


class JudgeFields(TypedDict):
    """One judgement as the item fields it is written to ``items.jsonl`` under.

    ``judge_score`` is 1.0 or 0.0, or None when the reply could not be parsed (or the call
    failed: ``judge_record["error"]``); ``judge_record`` holds :data:`RECORD_FIELDS` and
    the raw reply, error, cache hit and token counts.
    """

    judge_score: float | None
    judge_record: dict[str, Any]


@runtime_checkable
class Judge(Protocol):
    """Judges one answer to one probe with an LLM."""

    def judge(self, probe: Probe, answer: str) -> JudgeFields:
        ...

    def params(self) -> dict[str, Any]:
        ...


def template_hash(text: str) -> str:
    """Short content hash of a judge prompt template (first 16 hex of its sha256)."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]
