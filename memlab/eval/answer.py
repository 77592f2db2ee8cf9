"""Answering a probe: memories -> budgeted prompt -> (cached) LLM -> parsed answer -> scores.

The prompt puts the stable part first (system instructions, then memories, then the
question), so llama.cpp reuses its KV cache across a conversation's probes. Memory is
cut to ``max_memory_tokens`` (a rank-order prefix) and then fitted into the context
window minus the answer budget by the declared trim policy; every trim is recorded.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from memlab.contracts import check_score
from memlab.data.schema import Conversation, Probe
from memlab.eval.config import ExperimentConfig, JudgeSpec
from memlab.eval.timing import PhaseTimer
from memlab.llm.base import LLM, Completion, Message
from memlab.metrics.judge import Judge, JudgeFields
from memlab.prompts.builder import PromptBuilder, context_window
from memlab.prompts.template import Template
from memlab.retrieval.base import Hit
from memlab.tokens import count_tokens


def build_cached_llm(spec: dict[str, Any], config: ExperimentConfig) -> tuple[LLM, Any]:
    """The backend for ``spec`` wrapped in the on-disk response cache; (cached, raw)."""
    from memlab.llm import build_llm
    from memlab.llm.cache import CachedLLM

    raw = build_llm(spec)
    cached = CachedLLM(raw, mode=config.cache.llm)  # $MEMLAB_CACHE_DIR/llm/responses.sqlite
    return cached, raw


class Answerer:
    """Answers probes for one run and scores the answers."""

    def __init__(self, config: ExperimentConfig) -> None:
        from memlab.metrics import registry as scorers
        from memlab.prompts import get_template

        assert config.answer is not None, "retrieval-only runs have no answerer"
        self.spec = config.answer
        self.llm, raw = build_cached_llm(self.spec.llm.model_dump(), config)
        self.window = context_window(raw)
        self.template: Template = get_template(self.spec.template.name, config.template_dirs)
        self.prompts = PromptBuilder(self.template, self.window, self.spec.max_memory_tokens,
                                     self.spec.max_answer_tokens, self.spec.trim_policy)
        self.scorers = {name: scorers.build(name) for name in config.scorers}
        self.judge: Judge | None = (LLMJudge(config.judge, config)
                                    if config.judge is not None else None)
        self._digests: dict[str, str] = {}

    def digests(self) -> dict[str, str]:
        return dict(self._digests)

    def answer(self, conversation: Conversation, probe: Probe, hits: Sequence[Hit],
               timer: PhaseTimer) -> dict[str, Any]:
        """Item fields for ``probe``: answer, scores, tokens, model and prompt records."""
        with timer("prompt"):
            rendered, fitted = self.prompts.build(
                hits, question=probe.question, asked_at=probe.asked_at,
                speakers=list(conversation.speakers))
        with timer("generate"):
            messages: list[Message] = rendered.messages  # type: ignore[assignment]
            completion = self.llm.generate(messages, max_tokens=self.spec.max_answer_tokens)
        row = self._record(completion, rendered.record(), fitted.record(), fitted.kept)
        if not completion.ok:
            row["error"] = f"llm: {completion.error}"
            return row
        if not completion.text.strip() and not self.template.allow_empty:
            row["error"] = ("llm: empty completion (the server answered with no text; "
                            f"template '{self.template.name}' does not allow empty answers)")
            return row
        answer = _answer_text(self.template, completion.text)
        row["answer"] = answer
        with timer("score"):
            row["answer_metrics"] = {name: check_score(name, scorer.score(
                answer, probe.answer, probe)) for name, scorer in self.scorers.items()}
        if self.judge is not None:
            with timer("judge"):
                row.update(self.judge.judge(probe, answer))
            row["answer_metrics"]["judge"] = row.pop("judge_score")
        return row

    def _record(self, completion: Completion, prompt: dict[str, Any], trim: dict[str, Any],
                kept: Sequence[Hit]) -> dict[str, Any]:
        if completion.digest:
            self._digests[completion.model] = completion.digest
        return {
            "answer": None,
            "raw_answer": completion.text,
            "thinking": completion.thinking or None,
            "cache_hit": completion.cached,
            "llm": {"model": completion.model, "digest": completion.digest,
                    "context_window": self.window, **prompt, "trim": trim,
                    # the model's own seconds: a cache hit's ``seconds`` is the lookup
                    "generation_seconds": completion.metadata.get("generation_seconds",
                                                                  completion.seconds)},
            "tokens": {
                "prompt": completion.prompt_tokens,
                "qwen_prompt": trim["prompt_tokens"],
                "memory": sum(count_tokens(h.unit.text) for h in kept),
                "completion": completion.completion_tokens,
            },
        }


class LLMJudge:
    """The LLM judge (a :class:`memlab.metrics.judge.Judge`): ``spec``'s model asked with
    ``spec``'s template at temperature 0, through the response cache, with a logged identity
    (backend, model, digest, template, prompt hash) in every verdict's ``judge_record``."""

    def __init__(self, spec: JudgeSpec, config: ExperimentConfig) -> None:
        from memlab.prompts import get_template

        self.spec = spec
        self.llm, _ = build_cached_llm(spec.llm.model_dump(), config)
        self.template = get_template(spec.template, config.template_dirs)

    def params(self) -> dict[str, Any]:
        return self.spec.model_dump()

    def judge(self, probe: Probe, answer: str) -> JudgeFields:
        variables: dict[str, Any] = {"question": probe.question, "answer": probe.answer,
                                     "response": answer}
        if "question_type" in self.template.variables:
            variables["question_type"] = str(probe.category_id or probe.category)
            variables["abstention"] = probe.abstention
        rendered = self.template.render(**variables)
        messages: list[Message] = rendered.messages  # type: ignore[assignment]
        completion = self.llm.generate(messages, max_tokens=self.spec.max_tokens,
                                       temperature=0.0)
        verdict = self.template.parse(completion.text) if completion.ok else None
        return {
            "judge_score": None if verdict is None else float(bool(verdict)),
            "judge_record": {"backend": self.spec.llm.name, "model": completion.model,
                      "digest": completion.digest, "temperature": 0.0,
                      "raw": completion.text, "error": completion.error,
                      "cache_hit": completion.cached,
                      "tokens": {"prompt": completion.prompt_tokens,
                                 "completion": completion.completion_tokens},
                      **rendered.record()},
        }


def _answer_text(template: Template, text: str) -> str:
    parsed = template.parse(text)
    if parsed is None:
        return text.strip()
    return str(parsed).strip()
