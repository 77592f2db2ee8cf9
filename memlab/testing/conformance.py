"""Does a component behave as its kind must? ``check_component`` for one's own components.

A researcher's chunker, strategy or memory plugs into memlab by its registered name; the
run-time contracts (:mod:`memlab.contracts`) catch broken output while a run uses it.
This runs the same checks, and the ones a run cannot see, on a real conversation before
any run: the spec resolves to itself (every default filled in), ``params()`` gives that
spec back (so run records describe the component exactly), and the kind's own checks:

- chunker: the units of a real session keep the unit contract (unique ids, text, source
  turns of that session, not dated before them);
- embedder: float32 unit vectors, one per text, the same twice;
- store: units added come back by id and are counted;
- retrieval / memory: after indexing (ingesting) the whole conversation, a search as of
  its middle shows nothing from after it (future leakage), keeps the hit contract, and
  gives the same hits twice (deterministic);
- llm: a call returns a Completion, failed or not, and never raises;
- scorer: a number in [0, 1] (or None) for an answer.

``python -m memlab.eval conform KIND NAME [--params YAML] [--plugin MODULE]`` runs it from
the command line. A failed check is a :class:`ConformanceError` naming the component, the
check and what was wrong.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np

from memlab.components import protocol_problems
from memlab.contracts import ContractError, check_hits, check_units
from memlab.errors import MemlabError


class ConformanceError(MemlabError, AssertionError):
    """A component failed one of its kind's conformance checks."""


def check_component(kind: str, spec: Any, *, conversation: Any = None,
                    workdir: str | Path | None = None, call: bool = True) -> list[str]:
    """Run ``kind``'s checks on ``spec`` (a name, ``{name, params}`` or a built component);
    return the names of the checks that ran. ``conversation`` defaults to the first of
    memlab's synthetic set; ``workdir`` holds files a store writes (a temporary folder
    by default); ``call=False`` runs only the spec checks (for an LLM or embedder whose
    server is not there)."""
    from memlab.errors import ConfigError
    from memlab.spec import build, describe_differences, is_spec, resolve

    if kind not in CHECKS:
        raise ConfigError(f"conformance checks exist for {', '.join(CHECKS)}, not {kind!r} "
                          "(templates and datasets are checked by `validate` on a config)")
    who = f"{kind} {spec!r}" if isinstance(spec, str) else f"{kind} {_name(spec)}"
    done: list[str] = []

    def ensure(ok: bool, check: str, why: str) -> None:
        if not ok:
            raise ConformanceError(f"{who}: {check}: {why}")

    if is_spec(spec):
        resolved = resolve(kind, spec)
        ensure(resolve(kind, resolved) == resolved, "spec",
               "resolving the resolved spec changed it (defaults must be stable)")
        component = build(kind, resolved)
        again = resolve(kind, component)
        ensure(again["params"] == resolved["params"], "params", "params() does not give "
               f"the spec back: {describe_differences(resolved['params'], again['params'])}")
        done += ["spec", "params"]
    else:
        component = spec
    problems = protocol_problems(kind, component)
    ensure(not problems, "protocol", "; ".join(problems))
    done.append("protocol")
    check = CHECKS.get(kind)
    if not call or check is None:
        return done
    if conversation is None:
        from memlab.data import load_dataset

        conversation = load_dataset("synthetic").conversations[0]
    with tempfile.TemporaryDirectory() as scratch:
        try:
            done += check(component, conversation, Path(workdir or scratch), ensure)
        except ContractError as exc:
            raise ConformanceError(f"{who}: contract: {exc}") from None
        except (ConformanceError, MemlabError):
            raise
        except Exception as exc:  # the component's own failure: where, not a traceback
            raise ConformanceError(f"{who}: raised {type(exc).__name__}: {exc} ({_where(exc)})"
                                   ) from None
    return done


def _where(exc: BaseException) -> str:
    """The innermost frame of ``exc``'s traceback, as ``file:line in function``."""
    import traceback

    frames = traceback.extract_tb(exc.__traceback__)
    if not frames:
        return "no traceback"
    last = frames[-1]
    return f"{last.filename}:{last.lineno} in {last.name}"


Ensure = Callable[[bool, str, str], None]


def _check_chunker(chunker: Any, conversation: Any, _: Path, ensure: Ensure) -> list[str]:
    from memlab.contracts import turn_times

    session = conversation.sessions[0]
    units = chunker.split(session, conversation)
    check_units(units, "chunker", session.id, turn_times(session.turns), ())
    ensure(all(u.session_id == session.id for u in units), "units",
           "a unit names another session than the one it was made from")
    ensure(all(u.text.strip() for u in units), "units", "a unit has no text")
    return ["units"]


def _check_embedder(embedder: Any, _: Any, __: Path, ensure: Ensure) -> list[str]:
    texts = ["I keep bees.", "My sister lives in Lyon."]
    vectors = np.asarray(embedder.encode(texts))
    ensure(vectors.ndim == 2 and vectors.shape[0] == 2, "vectors",
           f"encode(2 texts) gave shape {vectors.shape}, not (2, dim)")
    ensure(vectors.dtype == np.float32, "vectors", f"dtype {vectors.dtype}, not float32")
    ensure(bool(np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)), "vectors",
           "vectors are not unit length (cosine scores would be dot products of "
           "unnormalised vectors)")
    ensure(bool(np.array_equal(np.asarray(embedder.encode(texts)), vectors)), "deterministic",
           "the same texts gave other vectors the second time")
    return ["vectors", "deterministic"]


def _check_store(store: Any, conversation: Any, workdir: Path, ensure: Ensure) -> list[str]:
    from memlab.chunkers.turn import TurnChunker
    from memlab.spec import build

    if type(store).__name__ == "SqliteStore":  # a file of its own, not the user's
        store = build("store", {"name": "sqlite", "params": {"path": str(workdir / "s.db")}})
    units = TurnChunker().split(conversation.sessions[0])
    store.add(units)
    try:
        ensure([u.id for u in store.get([units[0].id])] == [units[0].id], "get",
               "a unit added is not returned by its id")
        ensure(store.count() == len(units), "count",
               f"{len(units)} units added, count() says {store.count()}")
    finally:
        store.close()
    return ["get", "count"]


def _check_search(searcher: Any, conversation: Any, ensure: Ensure) -> list[str]:
    probe = conversation.probes[0]
    cut = conversation.sessions[len(conversation.sessions) // 2].started_at
    as_of = cut - timedelta(seconds=1)
    first = searcher.search(probe.question, 10, as_of, probe=probe)
    check_hits(first, "search", 10, as_of)  # includes: nothing dated after as_of
    second = searcher.search(probe.question, 10, as_of, probe=probe)
    ensure([(h.unit.id, h.score) for h in first] == [(h.unit.id, h.score) for h in second],
           "deterministic", "the same search gave other hits the second time")
    return ["no future leakage", "hits", "deterministic"]


def _check_retrieval(strategy: Any, conversation: Any, _: Path, ensure: Ensure) -> list[str]:
    from memlab.chunkers.turn import TurnChunker

    chunker = TurnChunker()
    strategy.index([u for s in conversation.sessions for u in chunker.split(s, conversation)])
    return _check_search(strategy, conversation, ensure)


def _check_memory(memory: Any, conversation: Any, _: Path, ensure: Ensure) -> list[str]:
    for session in conversation.sessions:
        memory.ingest(session, conversation)
    prepare = getattr(memory, "prepare", None)
    if callable(prepare):
        prepare()
    return _check_search(memory, conversation, ensure)


def _check_llm(llm: Any, _: Any, __: Path, ensure: Ensure) -> list[str]:
    from memlab.llm.base import Completion

    completion = llm.generate([{"role": "user", "content": "Say hi."}])
    ensure(isinstance(completion, Completion), "generate",
           f"returned {type(completion).__name__}, not a Completion")
    ensure(completion.ok == (completion.error is None) and (completion.ok or not
           completion.text), "generate", "a failed call must have an error and no text")
    return ["generate"]


def _check_scorer(scorer: Any, _: Any, __: Path, ensure: Ensure) -> list[str]:
    from memlab.contracts import check_score

    for answer, gold in (("a blue car", "a blue car"), ("no idea", "a blue car")):
        value = check_score("scorer", scorer.score(answer, gold))
        ensure(value is None or 0.0 <= value <= 1.0, "score",
               f"score({answer!r}, {gold!r}) = {value!r}, outside [0, 1]")
    return ["score"]


CHECKS: dict[str, Callable[[Any, Any, Path, Ensure], list[str]]] = {
    "chunker": _check_chunker, "embedder": _check_embedder, "store": _check_store,
    "retrieval": _check_retrieval, "memory": _check_memory, "llm": _check_llm,
    "scorer": _check_scorer}


def _name(spec: Any) -> str:
    if isinstance(spec, dict) and isinstance(spec.get("name"), str):
        return repr(spec["name"])
    return type(spec).__name__

