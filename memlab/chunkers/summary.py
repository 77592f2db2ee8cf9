"""An LLM summary per session: OMI's structured summary (title, overview) as one unit."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from memlab.chunkers.base import MemoryUnit
from memlab.chunkers.common import make_unit
from memlab.chunkers.llm_support import LLM_BOUNDS, LLMChunkerMixin, too_short, transcript
from memlab.data.schema import Conversation, Session
from memlab.prompts import extract_json, strip_thinking
from memlab.spec import Component


class SummaryChunker(LLMChunkerMixin, Component):
    """One ``summary`` unit per session, ``title`` then ``overview``, from an LLM.

    The template (``session_summary``) asks for JSON ``{"title", "overview"}``; an
    answer that is prose rather than JSON is kept whole as the overview
    (``metadata["parsed"] = "text"``), since it is still a summary. A failed call, an
    empty answer, or JSON without either field yields no unit and a record in
    ``records``. Sessions whose transcript is under ``min_chars`` characters are
    skipped without a call, as OMI discards them. The unit's sources are all the
    session's turns and its ``at`` is the last turn's time.
    """

    nested: ClassVar[Mapping[str, str]] = {"llm": "llm"}
    bounds: ClassVar[Mapping[str, Mapping[str, Any]]] = LLM_BOUNDS

    name = "summary"

    def __init__(
        self,
        llm: Any = None,
        min_chars: int = 25,
        template: str = "session_summary",
        template_dirs: Sequence[str] = (),
        max_tokens: int = 256,
    ) -> None:
        self.llm = llm
        self.min_chars = min_chars
        self.template = template
        self.template_dirs = template_dirs
        self.max_tokens = max_tokens
        self.records: list[dict[str, Any]] = []

    def check_params(self) -> None:
        """Raise a ConfigError for an invalid parameter (config validation runs it)."""
        self.check_bounds(f"chunker '{self.name}'")
        self.check_prompt()

    def split(self, session: Session, context: Conversation | None = None) -> list[MemoryUnit]:
        self.check_params()
        if not session.turns:
            return []
        if too_short(session, self.min_chars):
            self._record(session, context, None, None, outcome="skipped", units=0,
                         reason=f"transcript under {self.min_chars} characters")
            return []
        rendered = self._template().render(turns=transcript(session),
                                           session_date=session.started_at)
        completion = self._generate(rendered)
        if completion.error is not None:
            self._record(session, context, rendered, completion, outcome="error", units=0,
                         error=f"llm error: {completion.error}")
            return []
        title, overview, parsed = parse_summary(completion.text)
        if not (title or overview):
            self._record(session, context, rendered, completion, outcome="error", units=0,
                         error=f"no title or overview in answer: {completion.text[:300]!r}")
            return []
        text = "\n".join(part for part in (title, overview) if part)
        metadata = {"title": title, "overview": overview, "parsed": parsed,
                    **rendered.record(), "model": completion.model}
        self._record(session, context, rendered, completion, outcome="ok", units=1,
                     parsed=parsed)
        return [make_unit(session, self.name, 0, session.turns, kind="summary", text=text,
                          metadata=metadata)]


def parse_summary(text: str) -> tuple[str, str, str]:
    """(title, overview, how) from a model answer; ``how`` is ``json`` or ``text``."""
    data = extract_json(text)
    if isinstance(data, dict):
        title = _clean(data.get("title"))
        overview = _clean(data.get("overview") or data.get("summary"))
        return title, overview, "json"
    return "", _clean(strip_thinking(text)), "text"


def _clean(value: Any) -> str:
    return " ".join(str(value).split()) if isinstance(value, str | int | float) else ""
