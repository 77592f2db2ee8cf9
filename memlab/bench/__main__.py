"""``python -m memlab.bench TARGET [options]``: dispatch to one benchmark module."""

from __future__ import annotations

import importlib
import sys

TARGETS = {
    "llm": "memlab.bench.llm",
    "search": "memlab.bench.search",
    "eval": "memlab.bench.eval",
    "metrics": "memlab.bench.metrics",
    "agent": "memlab.bench.agent",
    "agent-recall": "memlab.bench.agent_recall",
    "probes": "memlab.bench.probes",
}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in {"-h", "--help"} or argv[0] not in TARGETS:
        print(f"usage: python -m memlab.bench {{{','.join(TARGETS)}}} [options]", file=sys.stderr)
        return 0 if argv and argv[0] in {"-h", "--help"} else 2
    module = importlib.import_module(TARGETS[argv[0]])
    return int(module.main(argv[1:]) or 0)


if __name__ == "__main__":
    raise SystemExit(main())
