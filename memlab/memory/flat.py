"""``flat``: a chunker feeding one retrieval strategy — the harness's default memory."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, ClassVar

from memlab.chunkers.base import Chunker, MemoryUnit
from memlab.data.schema import Conversation, Probe, Session
from memlab.memory.base import ComponentSpec
from memlab.retrieval.base import Hit, Retriever
from memlab.retrieval.wrap import prepare_index, warm_queries
from memlab.spec import Component, build


class FlatMemory(Component):
    """Every session is chunked into units; searches go to one retrieval strategy.

    The strategy is (re)indexed lazily on the first search after new units arrived, so
    ingesting a whole conversation and then answering its probes indexes once.
    """

    nested: ClassVar[Mapping[str, str]] = {"chunker": "chunker", "retrieval": "retrieval"}

    def __init__(self, chunker: ComponentSpec = "turn",
                 retrieval: ComponentSpec = "hybrid") -> None:
        self.chunker = chunker
        self.retrieval = retrieval
        self._chunker: Chunker = build("chunker", chunker)
        self._retriever: Retriever = build("retrieval", retrieval)
        self._units: list[MemoryUnit] = []
        self._ids: set[str] = set()
        self._chunker_name = (chunker if isinstance(chunker, str) else str(
            chunker.get("name")) if isinstance(chunker, Mapping) else
            getattr(chunker, "name", type(chunker).__name__))
        self._said: dict[str, datetime] = {}  # turn id -> when, of the sessions read
        self._indexed = 0
        self._trimming: Any = False  # False: not checked yet; then the strategy or None
        self._accounted: list[Any] | None = None  # the parts that make LLM calls

    def ingest(self, session: Session, conversation: Conversation | None = None
               ) -> list[MemoryUnit]:
        from memlab.contracts import check_units

        units = self._chunker.split(session, conversation)
        self._said.update((t.id, t.at) for t in session.turns)
        check_units(units, f"chunker '{self._chunker_name}'", session.id, self._said,
                    self._ids)
        self._units.extend(units)
        self._ids.update(u.id for u in units)
        return units

    def prepare(self) -> None:
        """Index the units ingested so far now (else the next search does)."""
        if self._indexed != len(self._units):
            self._retriever.index(self._units)
            self._indexed = len(self._units)
            prepare_index(self._retriever)

    def warm_queries(self, queries: Sequence[str]) -> bool:
        """Embed questions known ahead in batches (``wrap.warm_queries``): only speed.
        False when the strategy embeds no query (nothing was done)."""
        self.prepare()
        return warm_queries(self._retriever, queries)

    def search(self, query: str, k: int, as_of: datetime | None = None, *,
               probe: Probe | None = None) -> list[Hit]:
        self.prepare()
        return self._retriever.search(query, k, as_of, probe=probe)

    def units(self) -> Sequence[MemoryUnit]:
        return tuple(self._units)

    @property
    def last_trim(self) -> Any:
        """What the strategy's last search had to leave out (``full_context``), or None."""
        from memlab.memory.base import Trimming

        if self._trimming is False:  # a Protocol isinstance is slow: checked once
            self._trimming = self._retriever if isinstance(self._retriever, Trimming) else None
        return None if self._trimming is None else self._trimming.last_trim

    def take_calls(self) -> list[dict[str, Any]]:
        """The LLM calls the chunker and the strategy (keys built by an LLM while indexing)
        made since the last take; none for most."""
        from memlab.memory.base import Accounted

        if self._accounted is None:  # a Protocol isinstance is slow: checked once
            self._accounted = [part for part in (self._chunker, self._retriever)
                               if isinstance(part, Accounted)]
        return [call for part in self._accounted for call in part.take_calls()]
