"""What the LLM-driven chunkers (facts, summary) share: the model, the prompt, the log.

The model is given as a spec ``{"name": ..., "params": {...}}`` resolved through
``memlab.llm.build_llm`` on first use (None means the embedded Qwen, ``llamacpp``), or
as any object with ``generate(messages, **overrides) -> Completion``; pass the same
object the answerer uses to load a GGUF only once. Every call is appended to the
chunker's ``records`` (one dict per session: ids, template, prompt hash, model, token
counts, seconds, outcome, error), which is where a failed or unparseable answer is
reported, since it yields no unit to carry the error.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from memlab.chunkers.common import turns_text
from memlab.data.schema import Conversation, Session
from memlab.errors import ConfigError
from memlab.llm.calls import CallRecords
from memlab.prompts import Rendered, Template, check_template, get_template

#: The numbers every LLM chunker checks (``Component.bounds``; each class adds its own).
LLM_BOUNDS: Mapping[str, Mapping[str, Any]] = {"max_tokens": {"low": 1, "integer": True},
                                               "min_chars": {"low": 0, "integer": True}}

#: The model used when a chunker's ``llm`` is None: the embedded Qwen.
DEFAULT_LLM: dict[str, Any] = {"name": "llamacpp", "params": {}}


class LLMChunkerMixin(CallRecords):
    """Model resolution, prompt rendering and call records for LLM chunkers."""

    name: str
    llm: Any
    template: str
    template_dirs: Any
    max_tokens: int
    records: list[dict[str, Any]]
    _client: Any = None

    def _model(self) -> Any:
        if self._client is None:
            self._client = resolve_llm(self.llm, self.name)
        return self._client

    def _template(self) -> Template:
        return get_template(self.template, tuple(self.template_dirs or ()))

    def check_prompt(self) -> None:
        """Raise a ConfigError for an unknown template (``max_tokens`` is in the class's
        ``bounds``: :data:`LLM_BOUNDS`)."""
        check_template(f"chunker '{self.name}': template", self.template,
                       tuple(self.template_dirs or ()))

    def _generate(self, rendered: Rendered) -> Any:
        return self._model().generate(rendered.messages, max_tokens=self.max_tokens)

    def _record(self, session: Session, context: Conversation | None,
                rendered: Rendered | None, completion: Any, **outcome: Any) -> dict[str, Any]:
        record: dict[str, Any] = {
            "chunker": self.name, "conversation_id": context.id if context else None,
            "session_id": session.id, **(rendered.record() if rendered else {}),
        }
        if completion is not None:
            record.update(
                model=completion.model, digest=completion.digest,
                prompt_tokens=completion.prompt_tokens,
                completion_tokens=completion.completion_tokens,
                seconds=completion.seconds, cached=completion.cached,
            )
        record.update(outcome)
        record.setdefault("error", None)
        self.records.append(record)
        return record


def resolve_llm(spec: Any, chunker: str) -> Any:
    """An LLM object from a spec mapping, an LLM object, or None (the embedded default)."""
    if spec is None:
        spec = DEFAULT_LLM
    if isinstance(spec, Mapping):
        if "name" not in spec:
            raise ConfigError(f"chunker '{chunker}': llm spec needs a 'name', got {dict(spec)}")
        try:
            from memlab.llm import build_llm
        except ImportError as exc:
            raise ConfigError(f"chunker '{chunker}': cannot build LLM {spec['name']!r}: "
                              f"memlab.llm.build_llm is unavailable ({exc})") from None
        return build_llm(dict(spec))
    if callable(getattr(spec, "generate", None)):
        return spec
    raise ConfigError(f"chunker '{chunker}': llm must be a spec {{name, params}} or an object "
                      f"with generate(messages), got {type(spec).__name__}")


def transcript(session: Session) -> list[dict[str, Any]]:
    """The session's turns as template rows: ``n`` (1-based position, what the built-in
    templates show, since a small model copies small numbers more reliably than ids
    like ``D12:7``), ``id``, ``speaker`` and ``text`` (captions included)."""
    return [{"n": n, "id": t.id, "speaker": t.speaker, "text": t.full_text}
            for n, t in enumerate(session.turns, start=1)]


def too_short(session: Session, min_chars: int) -> bool:
    """OMI's first rule: skip content under ``min_chars`` characters (whole transcript)."""
    return len(turns_text(session.turns).strip()) < min_chars
