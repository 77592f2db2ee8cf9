"""Recall probes for chats that have none, written by an LLM from the sessions themselves.

Someone with their own history (an OMI transcript stream, an exported chat, a memlab
file) has no questions to score a memory with. :func:`generate_probes` asks an LLM,
once per session (template ``generate_probes``: the session's turns numbered 1..n), for
up to ``per_session`` questions about specific facts said in it, each with a short
answer and the turns that hold it, the way LoCoMo and LongMemEval built their
single-session questions. Every proposal is then checked here, and dropped with its
reason (kept in the dataset's ``issues``, never silently):

- ``empty``: no question or no answer (or a question under 3 words);
- ``no_turns``: none of its turn references is a turn of the session (references that
  miss the answer are moved to the one turn of the session that holds it, when exactly
  one does: a small model often cites a neighbouring turn);
- ``ungrounded``: under ``grounding`` of the answer's content words occur in the cited
  turns (matched on their first 5 letters, as the ``facts`` chunker does), or under
  half of the question's occur in the session - a small model copies the prompt's
  worked example (the cat called Miso) into sessions that never mention it;
- ``wrong_speaker``: the question names people of the conversation but none of them
  said a cited turn ("What is Gina's passion for?" answered from Jon's turn: 90 of the
  1.5B's 527 proposals for LoCoMo);
- ``wrong_role``: no cited turn is of one of ``roles`` (by default the user's and other
  people's, so an assistant's general advice - "What is a scavenger hunt?", asked of
  LongMemEval's chats - is not a probe; add ``assistant`` to test recall of what the
  assistant said);
- ``answer_in_question``: 3/4 of the answer's content words are already in the question
  (stems: "expand my brand worldwide" for "What is Calvin's plan for expanding his brand
  worldwide?");
- ``duplicate``: a question whose word set is ``similarity`` (Jaccard) close to a kept
  question of the same conversation;
- ``over_cap``: beyond ``per_session`` kept questions.

Sessions longer than ``max_chars`` are asked about in parts of whole turns (one call
each). A kept proposal becomes a :class:`~memlab.data.schema.Probe` (category ``generated``,
evidence = the cited turns and their session) asked after the conversation's last turn
(``asked_at="end"``: recall over the whole history) or right after its own session
(``"session"``); its metadata names the model, its digest and the prompt. The LLM is
built with memlab's response cache, so a second run with the same model, template and
sessions makes no call and writes the same file. Generated probes are a proxy: check
them against a benchmark's own questions before trusting a ranking they give (README,
"Probes for your own chats").
"""

from __future__ import annotations

import random
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import timedelta
from typing import Any

from memlab.chunkers.facts import (
    content_words,
    grounded_share,
    jaccard,
    proposed_items,
    resolve_turn,
    session_vocabulary,
    stems,
    turn_refs,
    word_set,
)
from memlab.chunkers.llm_support import too_short, transcript
from memlab.data.schema import Conversation, DataIssue, Dataset, Probe, Role, Session, Turn
from memlab.errors import ConfigError, check_numbers
from memlab.llm.base import Completion
from memlab.prompts import (
    Rendered,
    check_template,
    extract_json,
    get_template,
    list_schema,
    turn_numbers,
)

CATEGORY = "generated"
ASKED_AT = ("end", "session")
REASONS = ("empty", "no_turns", "ungrounded", "wrong_speaker", "wrong_role",
           "answer_in_question", "duplicate", "over_cap")
#: Roles whose turns a probe's evidence must include by default: what people said, not an
#: assistant's general advice ("What is a scavenger hunt?").
ROLES = ("user", "other")
_LIST_KEYS = ("questions", "probes", "items", "qa")
_QUESTION_KEYS = ("question", "q")
_ANSWER_KEYS = ("answer", "a")
_TURN_KEYS = ("turns", "turn_ids", "evidence", "turn", "ids")
#: Metadata key of a part of a long session ("2/3"), named in its issues' records.
PART = "probes_part"
#: The numeric options and their bounds (:func:`memlab.errors.check_number`'s).
BOUNDS: dict[str, dict[str, Any]] = {
    "per_session": {"low": 1, "integer": True},
    "max_sessions": {"low": 1, "integer": True, "optional": True},
    "conversations": {"low": 1, "integer": True, "optional": True},
    "min_chars": {"low": 0, "integer": True},
    "max_chars": {"low": 1, "integer": True},
    "grounding": {"low": 0, "high": 1},
    "similarity": {"low": 0, "high": 1, "low_open": True},
    "max_tokens": {"low": 1, "integer": True},
}


def probe_schema(per_session: int) -> dict[str, Any]:
    """The JSON schema of a reply (``structured``): at most ``per_session`` questions, each
    a question, an answer and the numbers of the turns holding it."""
    return list_schema("questions", {"question": {"type": "string"},
                                     "answer": {"type": "string"},
                                     "turns": turn_numbers(6)}, per_session)


#: How long after the last turn a probe is asked (``asked_at="end"``/``"session"``).
DELAY = timedelta(minutes=1)


@dataclass
class ProbeReport:
    """What one generation did: calls, tokens, seconds and what was kept or dropped."""

    model: str = ""
    digest: str = ""
    template: str = ""
    conversations: int = 0
    sessions: int = 0
    skipped_sessions: int = 0
    min_chars: int = 0
    calls: int = 0
    cached_calls: int = 0
    errors: list[str] = field(default_factory=list)
    proposed: int = 0
    kept: int = 0
    dropped: dict[str, int] = field(default_factory=lambda: dict.fromkeys(REASONS, 0))
    prompt_tokens: int = 0
    completion_tokens: int = 0
    llm_seconds: float = 0.0
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {k: (list(v) if isinstance(v, list) else dict(v) if isinstance(v, dict) else v)
                for k, v in self.__dict__.items()}

    def render(self) -> str:
        drops = ", ".join(f"{k} {v}" for k, v in self.dropped.items() if v) or "none"
        lines = [
            f"{self.kept} probes kept of {self.proposed} proposed, from {self.sessions} sessions "
            f"of {self.conversations} conversations ({self.skipped_sessions} sessions skipped: "
            f"empty or under --min-chars {self.min_chars} characters)",
            f"dropped: {drops}",
            f"{self.model} ({self.digest[:12]}): {self.calls} calls ({self.cached_calls} cached), "
            f"{self.prompt_tokens:,} prompt + {self.completion_tokens:,} completion tokens, "
            f"{self.llm_seconds:.1f} s in the LLM, {self.seconds:.1f} s in all"
            if self.calls else f"no LLM call, {self.seconds:.1f} s in all",
        ]
        if self.errors:
            lines.append(f"{len(self.errors)} failed calls, first: {self.errors[0]}")
        return "\n".join(lines)


@dataclass(frozen=True)
class _Rules:
    """What a proposal is held to, and when its probe is asked."""

    per_session: int
    grounding: float
    similarity: float
    asked_at: str
    roles: frozenset[str]


@dataclass(frozen=True)
class _Candidate:
    question: str
    answer: str
    refs: tuple[str, ...]


def generate_probes(
    dataset: Dataset,
    llm: Any = None,
    *,
    per_session: int = 2,
    max_sessions: int | None = None,
    conversations: int | None = None,
    seed: int = 0,
    asked_at: str = "end",
    keep_probes: bool = False,
    min_chars: int = 200,
    max_chars: int = 12000,
    grounding: float = 0.6,
    similarity: float = 0.8,
    roles: Sequence[str] = ROLES,
    template: str = "generate_probes",
    template_dirs: Sequence[str] = (),
    max_tokens: int = 384,
    structured: bool = False,
    cache: str = "readwrite",
    progress: bool = True,
) -> tuple[Dataset, ProbeReport]:
    """``dataset`` with LLM-written probes (see the module doc) and what it cost.

    ``llm`` is a spec ``{name, params}``, a backend name, an object with ``generate``, or
    None (the embedded Qwen). ``max_sessions`` samples that many sessions a conversation
    (seeded by ``seed`` and the conversation id; all by default) and ``conversations``
    keeps the first N conversations; sessions whose transcript is under ``min_chars``
    characters are skipped without a call, and a session longer than ``max_chars`` is
    asked about in parts of whole turns that fit (a call each, ``per_session`` questions a
    part), so no prompt outgrows a small model's context. The original probes are
    replaced unless ``keep_probes``. ``structured`` holds each reply to
    :func:`probe_schema` (the backend's JSON-schema decoding: at most ``per_session``
    questions, no prose, no runaway lists).
    """
    check_numbers("probes", {
        "per_session": per_session, "max_sessions": max_sessions,
        "conversations": conversations, "min_chars": min_chars, "max_chars": max_chars,
        "grounding": grounding, "similarity": similarity, "max_tokens": max_tokens}, BOUNDS)
    _check(asked_at, template, template_dirs, roles)
    from memlab.memory.support import build_llm

    model = build_llm(llm, cache=cache)
    prompt = get_template(template, tuple(template_dirs))
    rules = _Rules(per_session, grounding, similarity, asked_at, frozenset(roles))
    extra = {"json_schema": probe_schema(per_session)} if structured else {}
    chosen = dataset.conversations[:conversations] if conversations else dataset.conversations
    report = ProbeReport(template=template, conversations=len(chosen), min_chars=min_chars)
    start = time.perf_counter()
    plan = [(c, [part for s in _sessions(c, max_sessions, seed, min_chars, report)
                 for part in _parts(s, max_chars)]) for c in chosen]
    bar = _bar(sum(len(s) for _, s in plan), progress)
    issues: list[DataIssue] = list(dataset.issues)
    out: list[Conversation] = []
    try:
        for conv, sessions in plan:
            probes: list[Probe] = list(conv.probes) if keep_probes else []
            seen: list[frozenset[str]] = []
            made = 0
            for session in sessions:
                rendered = prompt.render(turns=transcript(session),
                                         session_date=session.started_at,
                                         n_questions=per_session)
                completion = model.generate(rendered.messages, max_tokens=max_tokens,
                                            **extra)
                new, dropped = _session_probes(conv, session, rendered, completion, rules,
                                               report, seen, made)
                made += len(new)
                probes += new
                issues += dropped
                bar.update(1)
            out.append(replace(conv, probes=tuple(probes)))
    finally:
        bar.close()
    report.seconds = round(time.perf_counter() - start, 3)
    report.llm_seconds = round(report.llm_seconds, 3)
    meta = {**dict(dataset.metadata), "generated_probes": {
        "model": report.model, "digest": report.digest, "template": template,
        "per_session": per_session, "max_sessions": max_sessions, "seed": seed,
        "asked_at": asked_at, "keep_probes": keep_probes, "min_chars": min_chars,
        "max_chars": max_chars, "grounding": grounding, "similarity": similarity,
        "roles": list(roles), "max_tokens": max_tokens, "structured": structured,
        "source": dataset.source or dataset.name}}
    generated = Dataset(name=f"{dataset.name}-generated", conversations=tuple(out),
                        source=dataset.source, issues=tuple(issues), metadata=meta)
    return generated, report


def _session_probes(conv: Conversation, session: Session, rendered: Rendered,
                    completion: Completion, rules: _Rules, report: ProbeReport,
                    seen: list[frozenset[str]],
                    numbered: int) -> tuple[list[Probe], list[DataIssue]]:
    """The probes one session's answer yields, and an issue for each proposal dropped."""
    report.calls += 1
    report.cached_calls += int(bool(getattr(completion, "cached", False)))
    report.model, report.digest = completion.model, completion.digest or ""
    report.prompt_tokens += completion.prompt_tokens or 0
    report.completion_tokens += completion.completion_tokens or 0
    report.llm_seconds += completion.seconds or 0.0
    where = f"session {session.id}" + (f" part {session.metadata[PART]}"
                                       if PART in session.metadata else "")
    if completion.error is not None:
        report.errors.append(f"{conv.id} {where}: {completion.error}")
        return [], [DataIssue(conv.id, where, "llm", str(completion.error)[:200],
                              "no probes: the LLM call failed")]
    items = proposed_items(extract_json(completion.text), _LIST_KEYS, _QUESTION_KEYS)
    if items is None:
        report.errors.append(f"{conv.id} {where}: unparseable answer {completion.text[:120]!r}")
        return [], [DataIssue(conv.id, where, "llm", completion.text[:200],
                              "no probes: unparseable answer")]
    vocabulary = session_vocabulary(session)
    probes: list[Probe] = []
    issues: list[DataIssue] = []
    for index, item in enumerate(items):
        report.proposed += 1
        candidate = _candidate(item)
        turns = _turns(candidate.refs, session, candidate.answer, rules.grounding)
        reason = _reject(candidate, turns, vocabulary, seen, rules, conv.speakers)
        if reason is None and len(probes) >= rules.per_session:
            reason = "over_cap"
        if reason is not None:
            report.dropped[reason] += 1
            issues.append(DataIssue(conv.id, f"{where} proposal {index}", "question",
                                    f"{candidate.question} -> {candidate.answer}"[:200],
                                    f"dropped: {reason}"))
            continue
        seen.append(word_set(candidate.question))
        probes.append(_probe(conv, session, candidate, turns, numbered + len(probes),
                             rules.asked_at, {**rendered.record(), "model": completion.model,
                                        "digest": completion.digest}))
    report.kept += len(probes)
    return probes, issues


def _reject(c: _Candidate, turns: list[Turn], vocabulary: frozenset[str],
            seen: list[frozenset[str]], rules: _Rules, speakers: Sequence[str]) -> str | None:
    if not c.answer or len(c.question.split()) < 3:
        return "empty"
    if not turns:
        return "no_turns"
    if (not _holds(c.answer, turns, rules.grounding)
            or grounded_share(c.question, vocabulary) < 0.5):
        return "ungrounded"
    named = _named(c.question, speakers)
    if named and not any(t.speaker in named for t in turns):
        return "wrong_speaker"
    if not any(str(t.role) in rules.roles for t in turns):
        return "wrong_role"
    if content_words(c.answer) and grounded_share(c.answer, stems(c.question)) >= 0.75:
        return "answer_in_question"
    words = word_set(c.question)
    if any(jaccard(words, s) >= rules.similarity for s in seen):
        return "duplicate"
    return None


def _named(question: str, speakers: Sequence[str]) -> set[str]:
    """The speakers a question names (whole words, any case)."""
    text = question.casefold()
    return {s for s in speakers
            if s and re.search(rf"(?<!\w){re.escape(s.casefold())}(?!\w)", text)}


def _probe(conv: Conversation, session: Session, c: _Candidate, turns: list[Turn], n: int,
           asked_at: str, generated_by: dict[str, Any]) -> Probe:
    if asked_at == "session":
        whole = next((s for s in conv.sessions if s.id == session.id), session)
        when = max(t.at for t in whole.turns) + DELAY
    else:
        when = max(t.at for s in conv.sessions for t in s.turns) + DELAY
    question = c.question if c.question.endswith("?") else c.question + "?"
    return Probe(id=f"{conv.id}:gen{n + 1}", question=question, answer=c.answer,
                 evidence_turn_ids=tuple(t.id for t in turns),
                 evidence_session_ids=(session.id,), category=CATEGORY, asked_at=when,
                 metadata={"generated_by": generated_by, "session_id": session.id})


def _sessions(conv: Conversation, max_sessions: int | None, seed: int, min_chars: int,
              report: ProbeReport) -> list[Session]:
    """The sessions of ``conv`` to ask about: long enough, sampled if asked, in time order."""
    usable = [s for s in conv.sessions if s.turns and not too_short(s, min_chars)]
    report.skipped_sessions += len(conv.sessions) - len(usable)
    if max_sessions is not None and len(usable) > max_sessions:
        picked = set(random.Random(f"{seed}:{conv.id}").sample(range(len(usable)),
                                                                  max_sessions))
        usable = [s for i, s in enumerate(usable) if i in picked]
    report.sessions += len(usable)
    return usable


def _candidate(item: Any) -> _Candidate:
    if not isinstance(item, Mapping):
        return _Candidate("", "", ())
    question = _text(item, _QUESTION_KEYS)
    answer = _text(item, _ANSWER_KEYS)
    raw: Any = next((item[k] for k in _TURN_KEYS if item.get(k) not in (None, "", [])), [])
    return _Candidate(question, answer, tuple(turn_refs(raw)))


def _text(item: Mapping[str, Any], keys: Sequence[str]) -> str:
    value = next((item[k] for k in keys if item.get(k) not in (None, "")), "")
    return " ".join(str(value).split()) if isinstance(value, str | int | float) else ""


def _parts(session: Session, max_chars: int) -> list[Session]:
    """``session`` as one part, or cut between turns into parts of at most ``max_chars``
    characters of transcript (a longer single turn is a part of its own)."""
    parts: list[list[Turn]] = [[]]
    size = 0
    for turn in session.turns:
        length = len(turn.speaker) + len(turn.full_text) + 8  # "[n] speaker: text\n"
        if parts[-1] and size + length > max_chars:
            parts.append([])
            size = 0
        parts[-1].append(turn)
        size += length
    if len(parts) == 1:
        return [session]
    return [replace(session, turns=tuple(p),
                    metadata={**session.metadata, PART: f"{n}/{len(parts)}"})
            for n, p in enumerate(parts, start=1)]


def _turns(refs: Sequence[str], session: Session, answer: str,
           grounding: float) -> list[Turn]:
    """The session's turns the references point at, each once, in session order; when
    they do not hold the answer but exactly one turn of the session does, that turn (a
    small model often cites a neighbour of the turn it copied the answer from)."""
    found = {t.id for t in (resolve_turn(r, session) for r in refs) if t is not None}
    cited = [t for t in session.turns if t.id in found]
    if not cited or _holds(answer, cited, grounding):
        return cited
    holding = [t for t in session.turns if _holds(answer, [t], grounding)]
    return holding if len(holding) == 1 else cited


def _holds(answer: str, turns: Sequence[Turn], grounding: float) -> bool:
    return grounded_share(answer, stems(" ".join(t.full_text for t in turns))) >= grounding


def _check(asked_at: Any, template: str, template_dirs: Sequence[str], roles: Any) -> None:
    if asked_at not in ASKED_AT:
        raise ConfigError(f"probes: asked_at must be one of {', '.join(ASKED_AT)}, "
                          f"got {asked_at!r}")
    check_template("probes: template", template, tuple(template_dirs))
    unknown = sorted(set(roles) - {r.value for r in Role})
    if isinstance(roles, str) or not roles or unknown:
        raise ConfigError(f"probes: roles must be a non-empty list of user / assistant / "
                          f"other, got {roles!r}")


def _bar(total: int, enabled: bool) -> Any:
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="probes: LLM per session", unit="call",
                disable=not enabled, leave=False)
