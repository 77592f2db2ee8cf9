"""``python -m memlab.bench llm``: prompt and generation speed of the embedded model.

Two scenarios, each repeated:

- **cold**: a ~N-token memory prompt whose first tokens differ from anything evaluated
  before, so llama.cpp evaluates the whole prompt;
- **warm prefix**: the same memory block again with a different question at the end, so
  only the tail after the shared prefix is evaluated (what answering several probes of one
  conversation in a row costs).

Speeds come from llama.cpp's own counters (prompt-eval and eval time per call), the wall
time is measured around ``generate``. The machine's core count and load are printed with
the table, because the cores may be shared.

``--beside-encoder`` runs both while a thread of the same process encodes batches of 64
new texts with the bundled MiniLM (ONNX), as an agent's background import does beside its
chats: the CPU turns of :mod:`memlab.compute` keep the batches out of the model's calls
(``MEMLAB_CPU_TURNS=0`` lets them run beside, to compare); the header counts the batches.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from memlab.bench import count, non_negative
from memlab.compute import TURNS
from memlab.llm.base import Message
from memlab.tokens import count_tokens

NAMES = ["Alice", "Bob", "Chen", "Dana", "Emeka", "Farah", "Goran", "Hana"]
THINGS = ["tulips", "a bicycle", "pottery classes", "a trip to Lisbon", "a new job",
          "sourdough", "a chess club", "violin lessons"]


def memory_block(target_tokens: int) -> str:
    """Deterministic chat-memory-like notes of about ``target_tokens`` Qwen tokens."""
    lines: list[str] = []
    i = 0
    while count_tokens("\n".join(lines)) < target_tokens:
        name, thing = NAMES[i % len(NAMES)], THINGS[(i * 3) % len(THINGS)]
        lines.append(f"[session {i // 4 + 1}, turn {i + 1}] {name} said they started {thing} "
                     f"on day {i * 2 + 1} and want to keep it up for {i % 5 + 2} weeks.")
        i += 1
    return "\n".join(lines)


def prompt(memory: str, question: str, nonce: str = "") -> list[Message]:
    system = (f"{nonce}You answer questions about a conversation using the notes below.\n"
              f"Notes:\n{memory}")
    return [Message(role="system", content=system), Message(role="user", content=question)]


def measure(llm: Any, messages: list[Message]) -> dict[str, float]:
    completion = llm.generate(messages)
    if not completion.ok:
        raise SystemExit(f"generation failed: {completion.error}")
    meta = completion.metadata
    return {
        "prompt_tokens": completion.prompt_tokens,
        "evaluated": meta["prompt_eval_tokens"],
        "prompt_s": meta["prompt_eval_seconds"],
        "gen_tokens": meta["eval_tokens"],
        "gen_s": meta["eval_seconds"],
        "wall_s": completion.seconds,
        "threads": meta["n_threads"],
    }


@contextmanager
def _encoding(on: bool) -> Iterator[list[int]]:
    """While open (if ``on``), a thread encoding batches of 64 new texts with the bundled
    MiniLM; yields the list it appends one item to per batch."""
    batches: list[int] = []
    if not on:
        yield batches
        return
    from memlab.embed import build_embedder

    embedder = build_embedder({"name": "sentence-transformers"})
    embedder.encode(["warm-up"])
    stop = threading.Event()

    def encode() -> None:
        while not stop.is_set():
            n = len(batches)
            embedder.encode([f"note {n}-{i}: {NAMES[i % 8]} started {THINGS[i % 8]} on day "
                             f"{i}" for i in range(64)])
            batches.append(n)

    worker = threading.Thread(target=encode, name="bench-encoder")
    worker.start()
    try:
        yield batches
    finally:
        stop.set()
        worker.join()


def run(n_ctx: int, threads: int, repeats: int, prompt_tokens: int,
        max_tokens: int, model_path: str, beside_encoder: bool = False) -> dict[str, Any]:
    from memlab.llm.llamacpp import LlamaCppLLM, avoid_amx

    llm = LlamaCppLLM(model_path=model_path, n_ctx=n_ctx, n_threads=threads,
                      max_tokens=max_tokens)
    memory = memory_block(prompt_tokens)
    question = "Summarise everything {} did, in detail, as a list."
    llm.generate(prompt(memory[:200], "Warm-up.", nonce="warm-up "))  # load the model
    rows: dict[str, list[dict[str, float]]] = {"cold": [], "warm prefix": []}
    with _encoding(beside_encoder) as batches:
        for r in range(repeats):
            rows["cold"].append(measure(llm, prompt(memory, question.format(NAMES[r % 8]),
                                                    nonce=f"[run {os.getpid()}-{r}] ")))
            rows["warm prefix"].append(measure(llm, prompt(
                memory, question.format(NAMES[(r + 1) % 8]),
                nonce=f"[run {os.getpid()}-{r}] ")))
    return {
        "beside_encoder": beside_encoder, "encoder_batches": len(batches),
        "cpu_turns": TURNS.enabled,
        "model": llm.name, "digest": llm.digest(), "n_ctx": n_ctx,
        "threads": sorted({r["threads"] for rs in rows.values() for r in rs}),
        "cpu_count": os.cpu_count(), "load_avg": os.getloadavg(), "repeats": repeats,
        "amx_workaround": avoid_amx(), "scenarios": {k: _summary(v) for k, v in rows.items()},
    }


def _summary(rows: list[dict[str, float]]) -> dict[str, float]:
    total = {k: sum(r[k] for r in rows) for k in rows[0] if k != "threads"}
    return {
        "prompt_tokens": statistics.mean(r["prompt_tokens"] for r in rows),
        "evaluated": statistics.mean(r["evaluated"] for r in rows),
        "prompt_tok_s": total["evaluated"] / total["prompt_s"] if total["prompt_s"] else 0.0,
        "effective_prompt_tok_s": total["prompt_tokens"] / total["prompt_s"]
        if total["prompt_s"] else 0.0,
        "gen_tokens": statistics.mean(r["gen_tokens"] for r in rows),
        "gen_tok_s": total["gen_tokens"] / total["gen_s"] if total["gen_s"] else 0.0,
        "wall_s": statistics.mean(r["wall_s"] for r in rows),
    }


def render(result: dict[str, Any]) -> str:
    head = (f"model {result['model']} (sha256 {result['digest'][:12]}…), n_ctx {result['n_ctx']}, "
            f"{'/'.join(map(str, result['threads']))} threads on {result['cpu_count']} "
            "cores, load avg "
            f"{result['load_avg'][0]:.2f}, {result['repeats']} repeats"
            + (", AMX off (workaround)" if result["amx_workaround"] else "")
            + (f", beside an encoder thread ({result['encoder_batches']} batches; CPU turns "
               f"{'on' if result['cpu_turns'] else 'off'})" if result["beside_encoder"] else ""))
    cols = ["scenario", "prompt tok", "evaluated", "prompt tok/s", "effective tok/s",
            "gen tok", "gen tok/s", "wall s"]
    lines = [head, "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for name, s in result["scenarios"].items():
        lines.append(
            f"| {name} | {s['prompt_tokens']:.0f} | {s['evaluated']:.0f} | "
            f"{s['prompt_tok_s']:.1f} | {s['effective_prompt_tok_s']:.1f} | "
            f"{s['gen_tokens']:.0f} | {s['gen_tok_s']:.1f} | {s['wall_s']:.2f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m memlab.bench llm", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n-ctx", type=count, default=8192)
    parser.add_argument("--threads", type=non_negative, default=0,
                        help="0 = the cores other processes leave free, before each call")
    parser.add_argument("--repeats", type=count, default=3)
    parser.add_argument("--prompt-tokens", type=count, default=1000)
    parser.add_argument("--max-tokens", type=count, default=64)
    parser.add_argument("--model-path", default="", help="GGUF file (default: embedded Qwen)")
    parser.add_argument("--beside-encoder", action="store_true",
                        help="while a thread of this process encodes with the bundled MiniLM")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args(argv)
    if args.repeats < 1 or args.prompt_tokens < 50 or args.prompt_tokens >= args.n_ctx:
        parser.error("need repeats >= 1 and 50 <= prompt-tokens < n-ctx")
    result = run(args.n_ctx, args.threads, args.repeats, args.prompt_tokens, args.max_tokens,
                 args.model_path, args.beside_encoder)
    print(json.dumps(result, indent=2) if args.json else render(result), file=sys.stdout)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
