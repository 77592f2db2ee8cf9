"""``python -m memlab.bench agent``: the live agent's memory speed, and mem0's beside it.

1. **Ingest**: ``N`` real LoCoMo turns stored through ``MemoryAgent.add_memory`` one at
   a time, each made searchable before the next (``add_memory`` then ``search_memory``:
   memlab embeds and indexes lazily, at the next search), and batched
   (``add_memories`` with every text, then one search). Cold = an empty embedding cache;
   warm = the same texts again for a new user (every embedding a cache hit).
2. **Search**: ``search_memory`` p50 / p95 end to end (query embedded by the model, never
   cached: each query is new) at 1k / 10k / 100k memories in one user's memory. The
   memories are filled in bulk (``add_memories``) from ``--fill-texts`` LoCoMo turns
   sampled with replacement, so only those distinct turns are ever embedded.
3. **Import**: ``--import-conversations`` LoCoMo conversations, each turned into one
   user's export (the first speaker as the user, the other as the assistant; each
   session one exchange), imported through ``MemoryAgent.import_user``; sessions per
   second, then the first search of each user (which embeds what came in).
4. **mem0** (only when ``mem0ai`` is installed): the same operations through mem0 OSS,
   fully local — the same bundled MiniLM through its ``huggingface`` embedder, its
   default local vector store, ``infer=False`` (no LLM call). mem0 is filled for the
   search rows by inserting the precomputed vectors into its vector store (adding 100k
   memories through ``add`` at its rate would take most of an hour): the same rows its
   ``search`` reads.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from memlab.bench import count
from memlab.bench.search import load_locomo, parse_size, percentiles


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _agent(data_dir: Path, backend: str | None) -> Any:
    """The agent of ``experiments/agent.yaml`` (tiered memory, dense MiniLM), mock LLM."""
    from memlab.agent import from_config
    from memlab.agent.settings import AgentSettings
    from memlab.llm.mock import MockLLM

    settings = AgentSettings()
    agent = from_config(data_dir=data_dir, settings=settings, llm=MockLLM(responses=["ok"]))
    if backend:
        from memlab.agent.build import set_embedders

        embedder = {"name": "sentence-transformers", "params": {"backend": backend}}
        set_embedders(agent.memory_params, embedder)
    return agent


def timed(action: Callable[[], Any]) -> float:
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


def memlab_ingest(agent: Any, user: str, texts: list[str], batched: bool) -> float:
    """Memories per second until every text is searchable."""
    if batched:
        seconds = timed(lambda: agent.add_memories(texts, user_id=user))
        seconds += timed(lambda: agent.search_memory("what happened?", user_id=user))
    else:
        seconds = 0.0
        for text in texts:
            seconds += timed(partial(agent.add_memory, text, user_id=user))
            seconds += timed(lambda: agent.search_memory("what happened?", user_id=user))
    return len(texts) / seconds


def memlab_search(agent: Any, user: str, queries: list[str]) -> tuple[float, float]:
    agent.search_memory(queries[0], user_id=user)  # index what was added
    seconds = [timed(partial(agent.search_memory, q, user_id=user)) for q in queries[1:]]
    return percentiles(seconds)


def locomo_exports(conversations: int) -> list[dict[str, Any]]:
    """The first ``conversations`` LoCoMo conversations, each as one user's agent export."""
    import memlab
    from memlab.agent.export import FORMAT, VERSION

    exports = []
    for conv in list(memlab.load_dataset("locomo"))[:conversations]:
        first = conv.sessions[0].turns[0].speaker
        messages: list[dict[str, Any]] = [
            {"kind": "chat", "session_id": session.id,
             "role": "user" if turn.speaker == first else "assistant",
             "content": turn.full_text, "at": turn.at.isoformat(), "meta": {}}
            for session in conv.sessions for turn in session.turns]
        exports.append({"format": FORMAT, "version": VERSION,
                        "users": {conv.id: {"messages": messages}}})
    return exports


def memlab_import(agent: Any, exports: list[dict[str, Any]]) -> dict[str, Any]:
    """Sessions per second through ``import_user``, and the first searches' seconds."""
    sessions, seconds, first = 0, 0.0, []
    for export in exports:
        [user] = export["users"]
        start = time.perf_counter()
        sessions += agent.import_user(user, export)["sessions"]
        seconds += time.perf_counter() - start
        first.append(timed(partial(agent.search_memory, "what happened?", user_id=user)))
    return {"import": sessions / seconds, "import sessions": sessions,
            "first search": percentiles(first)}


def sampled(texts: list[str], size: int, have: int) -> list[str]:
    """The texts that grow a memory of ``have`` units to ``size`` (same for both systems)."""
    rng = np.random.default_rng(size)
    return [texts[i] for i in rng.integers(0, len(texts), size - have)]


def fill_memlab(agent: Any, user: str, texts: list[str], size: int, have: int) -> None:
    more = sampled(texts, size, have)
    for start in range(0, len(more), 10_000):
        agent.add_memories(more[start : start + 10_000], user_id=user)


def run_memlab(texts: list[str], questions: list[str], args: argparse.Namespace,
               root: Path) -> dict[str, Any]:
    os.environ["MEMLAB_CACHE_DIR"] = str(root / "cache")
    agent = _agent(root / "memlab", args.backend)
    agent.add_memory("the model is loaded before timing", user_id="warm-up")
    agent.search_memory("warm up", user_id="warm-up")  # (and exported, in a fresh cache)
    sample = texts[: args.ingest]
    out: dict[str, Any] = {}
    _say("memlab: ingest cold / warm, one at a time and batched ...")
    out["one cold"] = memlab_ingest(agent, "one-cold", sample, batched=False)
    out["one warm"] = memlab_ingest(agent, "one-warm", sample, batched=False)
    other = texts[args.ingest : 2 * args.ingest]
    out["batch cold"] = memlab_ingest(agent, "batch-cold", other, batched=True)
    out["batch warm"] = memlab_ingest(agent, "batch-warm", other, batched=True)
    if args.import_conversations:
        _say(f"memlab: import {args.import_conversations} LoCoMo conversations ...")
        out |= memlab_import(agent, locomo_exports(args.import_conversations))
    have, asked = 0, 0
    for size in args.sizes:
        _say(f"memlab: search at {size:,} memories ...")
        fill_memlab(agent, "big", texts[: args.fill_texts], size, have)
        have = size
        queries = questions[asked : asked + args.queries + 1]
        asked += len(queries)
        out[f"search {size}"] = memlab_search(agent, "big", queries)
    agent.close()
    return out


def mem0_memory(root: Path) -> Any:
    """A fully local mem0 ``Memory``: bundled MiniLM, local Qdrant (its default), no LLM."""
    os.environ.setdefault("MEM0_TELEMETRY", "False")
    os.environ.setdefault("MEM0_DIR", str(root / "mem0-home"))
    from mem0 import Memory

    from memlab.embed.sentence_transformer import bundled_model_dir

    config = {
        "embedder": {"provider": "huggingface",
                     "config": {"model": str(bundled_model_dir()), "embedding_dims": 384}},
        "vector_store": {"provider": "qdrant",
                         "config": {"path": str(root / "mem0-qdrant"),
                                    "embedding_model_dims": 384, "collection_name": "bench"}},
        "history_db_path": str(root / "mem0-history.db"),
        "llm": {"provider": "ollama", "config": {"model": "unused-with-infer-false"}},
    }
    return Memory.from_config(config)


def mem0_ingest(memory: Any, user: str, texts: list[str], batched: bool) -> float:
    start = time.perf_counter()
    if batched:
        memory.add([{"role": "user", "content": t} for t in texts], user_id=user, infer=False)
    else:
        for text in texts:
            memory.add(text, user_id=user, infer=False)
    return len(texts) / (time.perf_counter() - start)


def fill_mem0(memory: Any, user: str, texts: list[str], size: int, have: int) -> None:
    """Insert memories straight into mem0's vector store (as ``add`` would store them),
    with the vectors memlab computed for the same texts (ONNX fp32 MiniLM, cached while
    filling memlab; cosine >= 0.9999 to mem0's own torch vectors)."""
    import uuid

    from memlab.embed import CachedEmbedder
    from memlab.embed.sentence_transformer import SentenceTransformerEmbedder

    embedder = CachedEmbedder(SentenceTransformerEmbedder())
    more = sampled(texts, size, have)
    for start in range(0, len(more), 2_000):
        part = more[start : start + 2_000]
        memory.vector_store.insert(
            vectors=embedder.encode(part).tolist(), ids=[str(uuid.uuid4()) for _ in part],
            payloads=[{"data": t, "user_id": user, "text_lemmatized": t} for t in part])


def run_mem0(texts: list[str], questions: list[str], args: argparse.Namespace,
             root: Path) -> dict[str, Any]:
    memory = mem0_memory(root)
    memory.add("the model is loaded before timing", user_id="warm-up", infer=False)
    out: dict[str, Any] = {}
    _say("mem0: ingest one at a time and batched ...")
    out["one cold"] = mem0_ingest(memory, "one", texts[: args.ingest], batched=False)
    out["batch cold"] = mem0_ingest(memory, "batch", texts[args.ingest : 2 * args.ingest],
                                    batched=True)
    have, asked = 0, 0
    for size in args.sizes:
        if size > args.mem0_max:
            continue
        _say(f"mem0: search at {size:,} memories ...")
        fill_mem0(memory, "big", texts[: args.fill_texts], size, have)
        have = size
        queries = questions[asked : asked + args.queries]
        asked += len(queries)
        seconds = [timed(partial(memory.search, q, top_k=3, filters={"user_id": "big"}))
                   for q in queries]
        out[f"search {size}"] = percentiles(seconds)
    return out


def render(ours: dict[str, Any], theirs: dict[str, Any] | None, args: argparse.Namespace
           ) -> str:
    def cell(table: dict[str, Any] | None, key: str) -> str:
        if table is None or key not in table:
            return "—"
        value = table[key]
        if isinstance(value, tuple):
            return f"{value[0]:.1f} / {value[1]:.1f}"
        return f"{value:,.0f}" if value >= 100 else f"{value:.2g}"

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    lines = [f"memlab.bench agent: {os.cpu_count()} cores, load average {load:.1f} at the end "
             f"(shared); embedder all-MiniLM-L6-v2 ({args.backend or 'default backend'}); mem0: "
             f"{'measured' if theirs is not None else 'not installed or --no-mem0'}", "",
             "| measure | memlab agent | mem0 (local, infer=False) | memlab / mem0 |",
             "|---|---|---|---|"]
    names = {"one cold": f"add, one at a time, cold (memories/s, {args.ingest})",
             "one warm": "add, one at a time, warm: embeddings cached (memories/s)",
             "batch cold": f"add, batched, cold (memories/s, {args.ingest})",
             "batch warm": "add, batched, warm (memories/s)"}
    if "import" in ours:
        names["import"] = (f"import an export (sessions/s, {args.import_conversations} LoCoMo "
                           f"conversations, {ours['import sessions']} sessions)")
        names["first search"] = "first search after an import, p50 / p95 ms (embeds it)"
    names |= {f"search {n}": f"search p50 / p95 ms at {n:,} memories" for n in args.sizes}
    for key, name in names.items():
        ratio = "—"
        if theirs and key in theirs and not isinstance(ours[key], tuple):
            ratio = f"{ours[key] / theirs[key]:.1f}x"
        elif theirs and key.startswith("one warm") and "one cold" in theirs:
            ratio = f"{ours[key] / theirs['one cold']:.1f}x vs mem0 cold"
        elif theirs and key.startswith("batch warm") and "batch cold" in theirs:
            ratio = f"{ours[key] / theirs['batch cold']:.1f}x vs mem0 cold"
        lines.append(f"| {name} | {cell(ours, key)} | {cell(theirs, key)} | {ratio} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m memlab.bench agent", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ingest", type=count, default=500, help="memories per ingest row")
    parser.add_argument("--sizes", default="1k,10k,100k", help="memories per user")
    parser.add_argument("--queries", type=count, default=100, help="searches per size")
    parser.add_argument("--mem0-max", default="100k", help="largest size searched in mem0")
    parser.add_argument("--fill-texts", type=count, default=2000,
                        help="distinct LoCoMo turns the search rows' memories are drawn from")
    parser.add_argument("--import-conversations", type=int, default=10, metavar="N",
                        help="LoCoMo conversations imported as agent exports (0: none)")
    parser.add_argument("--no-mem0", action="store_true", help="skip mem0 even if installed")
    parser.add_argument("--backend", default=None, choices=("torch", "onnx", "onnx-int8"),
                        help="MiniLM backend of the agent (default: the embedder's own)")
    args = parser.parse_args(argv)
    if args.import_conversations < 0:
        parser.error(f"--import-conversations must be >= 0, got {args.import_conversations}")
    args.sizes = [parse_size(s) for s in args.sizes.split(",")]
    args.mem0_max = parse_size(args.mem0_max)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    texts, questions = load_locomo()
    texts = list(dict.fromkeys(texts))
    theirs = None
    with tempfile.TemporaryDirectory(prefix="memlab-bench-agent-") as tmp:
        ours = run_memlab(texts, questions, args, Path(tmp))
        if not args.no_mem0 and importlib.util.find_spec("mem0") is not None:
            theirs = run_mem0(texts, questions, args, Path(tmp))
    print(render(ours, theirs, args))
    return 0
