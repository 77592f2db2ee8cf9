"""``python -m memlab.bench TARGET [options]``: dispatch to one benchmark module."""

from __future__ import annotations

import importlib
import sys

from memlab.errors import MemlabError

TARGETS = {
    "llm": "memlab.bench.llm",
    "search": "memlab.bench.search",
    "eval": "memlab.bench.eval",
    "metrics": "memlab.bench.metrics",
    "agent": "memlab.bench.agent",
    "agent-recall": "memlab.bench.agent_recall",
    "probes": "memlab.bench.probes",
}


#: What each benchmark measures (``--help``; each has its own ``TARGET --help``).
ABOUT = {
    "llm": "prompt and generation speed of the embedded Qwen",
    "search": "what each retrieval strategy and store costs at scale",
    "eval": "how long the harness takes, cold and warm",
    "metrics": "what scoring every LoCoMo probe costs",
    "agent": "the live agent's memory speed, and mem0's beside it",
    "agent-recall": "a scripted chat: 10 facts told, a restart, 10 recall questions",
    "probes": "search time per probe of each retrieval case of a config",
}
USAGE = f"usage: python -m memlab.bench {{{','.join(TARGETS)}}} [options]"


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in {"-h", "--help"}:
        width = max(map(len, TARGETS))
        print("\n".join([USAGE, "", "Tables of figures measured on this machine:",
                         *(f"  {t:<{width}}  {ABOUT[t]}" for t in TARGETS),
                         "", "python -m memlab.bench TARGET --help: its options."]))
        return 0
    if not argv or argv[0] not in TARGETS:
        problem = (f"unknown benchmark {argv[0]!r} (choose from {', '.join(TARGETS)})"
                   if argv else "name a benchmark")
        print(f"{USAGE}\npython -m memlab.bench: error: {problem}", file=sys.stderr)
        return 2
    module = importlib.import_module(TARGETS[argv[0]])
    try:
        return int(module.main(argv[1:]) or 0)
    except MemlabError as exc:  # a user's mistake (a dataset name, a label): one line
        print(f"python -m memlab.bench {argv[0]}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
