"""Hand-made sessions and a scripted model for the memory-architecture and agent tests.

Imported by the other test modules; its own tests check that the scripted model reads
the built-in templates the way they are rendered.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from memlab.data.schema import Conversation, Role, Session, Turn
from memlab.llm.base import Completion

T0 = datetime(2024, 3, 1, 9, 0, tzinfo=UTC)
HASH_DENSE = {"name": "dense", "params": {"embedder": "hash"}}


def session(sid: str, day: int, texts: Sequence[str]) -> Session:
    """Turns alternating user / assistant, one minute apart, ``day`` days after T0."""
    start = T0 + timedelta(days=day)
    turns = tuple(
        Turn(f"{sid}:t{n}", sid, "user" if n % 2 else "assistant",
             Role.USER if n % 2 else Role.ASSISTANT, text, start + timedelta(minutes=n))
        for n, text in enumerate(texts, start=1))
    return Session(sid, start, turns)


def conversation(*sessions: Session) -> Conversation:
    return Conversation("c1", ("user", "assistant"), tuple(sessions), ())


def at(day: int, minutes: int = 0) -> datetime:
    return T0 + timedelta(days=day, minutes=minutes)


def numbered_turns(prompt: str) -> dict[int, str]:
    """``[n] speaker: text`` lines of a transcript prompt -> {n: text}."""
    out = {}
    for line in prompt.splitlines():
        match = re.match(r"^\[(\d+)\] \w+: (.*)$", line)
        if match:
            out[int(match.group(1))] = match.group(2)
    return out


class ScriptedLLM:
    """Answers summary, fact-extraction and update prompts from small scripts.

    ``facts(turns)`` gets ``{n: text}`` of the transcript and returns ``[(content, [n])]``;
    ``decide(fact)`` returns the JSON decision for an update prompt. Calls are kept by
    kind in ``calls``.
    """

    def __init__(self, facts: Callable[[dict[int, str]], list[tuple[str, list[int]]]] = (
                     lambda turns: []),
                 decide: Callable[[str, str], dict[str, Any] | str] = (
                     lambda fact, memories: {"event": "ADD"}),
                 fail: bool = False) -> None:
        self.facts = facts
        self.decide = decide
        self.fail = fail
        self.calls: dict[str, list[list[dict[str, str]]]] = {
            "summary": [], "facts": [], "update": []}
        #: each call's keyword overrides (max_tokens, json_schema ...), by kind
        self.overrides: dict[str, list[dict[str, Any]]] = {k: [] for k in self.calls}

    def params(self) -> dict[str, Any]:
        return {"model": "scripted"}

    def generate(self, messages: Sequence[dict[str, str]], **overrides: Any) -> Completion:
        system, user = messages[0]["content"], messages[-1]["content"]
        kind = ("summary" if "You summarise one conversation" in system else
                "update" if "long-term memory up to date" in system else "facts")
        self.calls[kind].append(list(messages))
        self.overrides[kind].append(dict(overrides))
        if self.fail:
            return Completion("", 0, 0, 0.0, "scripted", error="connection refused")
        return Completion(self._answer(kind, user), 10, 10, 0.0, "scripted")

    def _answer(self, kind: str, user: str) -> str:
        if kind == "summary":
            turns = numbered_turns(user)
            return json.dumps({"title": "Chat", "overview": f"They said {len(turns)} things."})
        if kind == "facts":
            facts = self.facts(numbered_turns(user))
            return json.dumps({"memories": [
                {"content": c, "category": "interesting", "turn_ids": ids} for c, ids in facts]})
        tail = user.split("New fact", 1)[1].split(": ", 1)[1]
        answer = self.decide(tail.rsplit("\nAnswer:", 1)[0].strip(), user)
        return answer if isinstance(answer, str) else json.dumps(answer)


def test_scripted_llm_reads_the_builtin_templates() -> None:
    from memlab.chunkers.base import MemoryUnit
    from memlab.chunkers.facts import FactsChunker
    from memlab.memory.decisions import Decider

    seen: list[dict[int, str]] = []
    llm = ScriptedLLM(facts=lambda turns: seen.append(turns) or [("User likes tea", [1])],
                      decide=lambda fact, prompt: {"event": "NONE", "id": 1} if fact ==
                      "User adores tea" else {"event": "ADD"})
    units = FactsChunker(llm=llm).split(session("s1", 0, ["I like tea a lot.", "Noted!"]))
    assert seen == [{1: "I like tea a lot.", 2: "Noted!"}]
    assert [(u.text, u.source_turn_ids) for u in units] == [("User likes tea", ("s1:t1",))]
    old = MemoryUnit("m/v1", "User likes tea", "fact", ("s1:t1",), "s1", T0)
    decision = Decider(llm, similar_threshold=0.1).decide("User adores tea", at(1), [(old, 0.5)])
    assert (decision.event, decision.target, decision.by) == ("NONE", old, "llm")
    assert len(llm.calls["facts"]) == 1 and len(llm.calls["update"]) == 1
