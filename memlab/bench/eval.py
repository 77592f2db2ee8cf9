"""``python -m memlab.bench eval``: how long the harness takes, cold and warm.

1. The full LoCoMo retrieval-only evaluation (1,986 probes, turn units, hybrid = BM25 +
   MiniLM) with EMPTY caches (a fresh cache directory: every unit embedded), then again
   with the caches warm (embeddings read back). The ONNX backend's one-time export of
   the bundled weights (once per install, like fetching a model) is timed on its own
   row, before the cold run, into the same fresh cache directory.
2. The harness's own overhead per probe — everything except model calls — measured with
   the scripted mock LLM (zero model time) answering every probe through the full answer
   path: retrieval, prompt rendering with exact token counts and trimming, scoring.

With ``--sweep CONFIG`` (e.g. ``experiments/locomo-retrieval.yaml``) it times that whole
sweep instead, as a user runs it (MLflow logging included, into a temporary store): once
with an empty cache directory and once more with the caches the first pass filled.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from memlab.bench import count
from memlab.eval.run import evaluate


def _timed_run(config: dict[str, Any], out: Path, cache: Path) -> tuple[float, Any]:
    os.environ["MEMLAB_CACHE_DIR"] = str(cache)
    start = time.perf_counter()
    result = evaluate(config, out=out, progress=False, track=False)
    return time.perf_counter() - start, result


def _timed_export(backend: str | None, cache: Path) -> float | None:
    """Seconds to export the MiniLM to ONNX into ``cache`` (None for the torch backend)."""
    from memlab.embed.onnx_backend import ensure_model
    from memlab.embed.sentence_transformer import SentenceTransformerEmbedder

    embedder = SentenceTransformerEmbedder(backend=backend) if backend else (
        SentenceTransformerEmbedder())
    folder = embedder._folder()
    if embedder._backend() == "torch" or folder is None:
        return None
    os.environ["MEMLAB_CACHE_DIR"] = str(cache)
    precision = "int8" if embedder.backend == "onnx-int8" else "fp32"
    start = time.perf_counter()
    ensure_model(folder, embedder._revision(), precision)
    return time.perf_counter() - start


def _timed_sweep(config: str, out: Path, cache: Path, workers: int | None, track: bool
                 ) -> tuple[float, Any]:
    from memlab.eval.sweep import sweep

    os.environ["MEMLAB_CACHE_DIR"] = str(cache)
    start = time.perf_counter()
    table = sweep(config, out=out, workers=workers, progress=False,
                  track=None if track else False)
    return time.perf_counter() - start, table


def bench_sweep(config: str, workers: int | None, *, track: bool = True,
                cache: Path | None = None) -> int:
    """Cold then warm; with ``cache`` (a cache directory an earlier pass filled) the warm
    pass alone. ``track=False`` leaves MLflow out (the sweep's ``--no-mlflow``)."""
    with tempfile.TemporaryDirectory(prefix="memlab-bench-") as tmp:
        root = Path(tmp)
        os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{root / 'mlflow.db'}"
        cold = None
        if cache is None:
            cache = root / "cache"
            cold, _ = _timed_sweep(config, root / "cold", cache, workers, track)
        warm, table = _timed_sweep(config, root / "warm", cache, workers, track)
    runs, probes = len(table), int(table["probes"].sum())
    rows = [("runs in the sweep", str(runs)), ("probes, all runs", f"{probes:,}"),
            ("sweep, warm caches (s)", f"{warm:.1f}"),
            ("warm time per run (s)", f"{warm / runs:.2f}"),
            ("warm time per probe (ms)", f"{1000 * warm / probes:.2f}")]
    if cold is not None:
        rows[2:2] = [("sweep, cold caches (s)", f"{cold:.1f}"),
                     ("speed-up warm vs cold", f"{cold / warm:.1f}x")]
    logging = "MLflow logging included" if track else "no MLflow"
    _print(f"memlab.bench eval --sweep {config}: {logging}, {os.cpu_count()} cores", rows)
    return 0


def _print(title: str, rows: list[tuple[str, str]]) -> None:
    width = max(len(r[0]) for r in rows)
    print(title)
    print(f"{'measure':<{width}}  value")
    print(f"{'-' * width}  -----")
    for name, value in rows:
        print(f"{name:<{width}}  {value}")


def retrieval_spec(args: argparse.Namespace) -> dict[str, Any]:
    """The strategy, with the MiniLM backend set where it embeds (dense, hybrid, mmr)."""
    if not args.backend:
        return {"name": args.retrieval}
    embedder = {"name": "sentence-transformers", "params": {"backend": args.backend}}
    if args.retrieval == "hybrid":
        return {"name": "hybrid", "params": {"dense": {"embedder": embedder}}}
    return {"name": args.retrieval, "params": {"embedder": embedder}}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m memlab.bench eval", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="locomo")
    parser.add_argument("--retrieval", default="hybrid")
    parser.add_argument("--limit", type=count, default=None, help="only the first N probes")
    parser.add_argument("--backend", default=None, choices=("torch", "onnx", "onnx-int8"),
                        help="the MiniLM embedder's backend (default: the embedder's own)")
    parser.add_argument("--sweep", metavar="CONFIG", default=None,
                        help="time this experiment's whole sweep cold and warm instead")
    parser.add_argument("--workers", type=count, default=None, help="with --sweep: processes")
    parser.add_argument("--no-mlflow", action="store_true",
                        help="with --sweep: without MLflow logging (the sweep's --no-mlflow)")
    parser.add_argument("--cache", type=Path, default=None,
                        help="with --sweep: time only the warm pass on this filled cache")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if args.sweep:
        return bench_sweep(args.sweep, args.workers, track=not args.no_mlflow,
                           cache=args.cache)
    probes: dict[str, Any] = {"limit": args.limit} if args.limit else {}
    base = {"name": "bench", "dataset": {"name": args.dataset, "probes": probes},
            "chunker": {"name": "turn"}, "retrieval": retrieval_spec(args),
            "tracking": {"mlflow": False}}
    with tempfile.TemporaryDirectory(prefix="memlab-bench-") as tmp:
        root = Path(tmp)
        cache = root / "cache"
        embeds = args.retrieval in ("hybrid", "dense", "mmr")
        export = _timed_export(args.backend, cache) if embeds else None
        cold, result = _timed_run(base, root / "cold", cache)
        warm, _ = _timed_run(base, root / "warm", cache)
        mock = {**base, "answer": {"llm": {"name": "mock", "params": {"responses": ["x"]}}},
                "cache": {"llm": "off"}}
        answered, answered_result = _timed_run(mock, root / "mock", cache)
    n = result.summary["probes"]
    lat = answered_result.summary["latency_seconds"]
    rows = [("one-time ONNX export of the MiniLM (s)", f"{export:.1f}")] if export else []
    rows += [
        ("retrieval-only run, cold caches (s)", f"{cold:.1f}"),
        ("retrieval-only run, warm caches (s)", f"{warm:.1f}"),
        ("speed-up warm vs cold", f"{cold / warm:.1f}x"),
        ("probes", str(n)),
        ("harness overhead per probe, mock LLM (ms)", f"{1000 * answered / n:.1f}"),
    ]
    for phase in ("search", "prompt", "generate", "score"):
        if phase in lat and lat[phase]["p50"] is not None:
            rows.append((f"  {phase} p50 / p95 (ms)",
                         f"{1000 * lat[phase]['p50']:.2f} / {1000 * lat[phase]['p95']:.2f}"))
    backend = f", embedder backend {args.backend}" if args.backend else ""
    _print(f"memlab.bench eval: {args.dataset}, turn units, {args.retrieval}{backend}, "
           f"{os.cpu_count()} cores", rows)
    return 0
