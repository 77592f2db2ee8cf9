"""One prompt builder for the harness and the live agent.

Memories (ranked hits) are cut to ``max_memory_tokens`` as a rank-order prefix, then
fitted into the model's context window minus the answer budget by the declared trim
policy (:func:`memlab.llm.budget.fit_context`); the template is rendered with the kept
memories and the caller's variables. The evaluator's ``Answerer`` and the agent's
``chat`` both build their prompts here, so the configuration that won an evaluation is
exactly the prompt the agent sends.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from memlab.llm.budget import BudgetResult, fit_context
from memlab.prompts.template import Rendered, Template
from memlab.retrieval.base import Hit
from memlab.tokens import count_tokens

DEFAULT_CONTEXT_WINDOW = 8192


def context_window(llm: Any) -> int:
    """The backend's context window from its parameters (n_ctx / num_ctx)."""
    params = llm.params()
    for key in ("n_ctx", "num_ctx", "context_window"):
        if isinstance(params.get(key), int):
            return int(params[key])
    return DEFAULT_CONTEXT_WINDOW


def within_tokens(hits: Sequence[Hit], budget: int) -> list[Hit]:
    """The longest rank-order prefix of ``hits`` whose texts fit ``budget`` tokens."""
    kept, used = [], 0
    for hit in hits:
        n = count_tokens(hit.unit.text)
        if used + n > budget:
            break
        kept.append(hit)
        used += n
    return kept


@dataclass(frozen=True)
class PromptBuilder:
    """``build(hits, **variables)`` -> (rendered prompt, what the budget kept/dropped)."""

    template: Template
    context_window: int
    max_memory_tokens: int
    max_answer_tokens: int
    trim_policy: str

    def build(self, hits: Sequence[Hit], **variables: Any
              ) -> tuple[Rendered, BudgetResult[Hit]]:
        memories = within_tokens(hits, self.max_memory_tokens)

        def render(kept: Sequence[Hit]) -> Any:
            return self.template.render(memories=list(kept), **variables).messages

        # truncate_oldest drops by the units' times (a Hit has no ``at`` of its own)
        times = [hit.unit.at for hit in memories]
        fitted = fit_context(render, memories, context_window=self.context_window,
                             answer_budget=self.max_answer_tokens, policy=self.trim_policy,
                             times=times if None not in times else None)
        return self.template.render(memories=list(fitted.kept), **variables), fitted
