"""``python -m memlab.bench search``: what each retrieval strategy and store costs at scale.

For 10k / 100k / 1M units it prints index build time and query latency p50 / p95 (the
search alone, and with the query embedded by the real model first), recall@10 of the
approximate faiss indexes against exact search, store write / reload / lookup times, and
the default embedder's throughput on LoCoMo turns.

The corpus is synthesised from real data and says so: unit texts are LoCoMo turns sampled
with replacement (the BM25 corpus), each unit's vector is the real all-MiniLM-L6-v2
embedding of its turn plus Gaussian noise of norm ``--noise``, renormalised; queries are
LoCoMo questions embedded by the same model. Embeddings of the 5,882 LoCoMo turns come
from (and go to) the persistent embedding cache, so only the first run pays for them.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from memlab.bench import count, fractions

T0 = datetime(2023, 1, 1, tzinfo=UTC)
K = 10


@dataclass
class Row:
    """One measured line of the strategy or store table."""

    table: str
    name: str
    size: int
    build_s: float
    p50_ms: float | None = None
    p95_ms: float | None = None
    embed_p50_ms: float | None = None
    embed_p95_ms: float | None = None
    recall_at_10: float | None = None
    queries: int = 0
    note: str = ""


class QueryEmbedder:
    """Serves precomputed query vectors (search alone) or runs the model (``live``)."""

    cheap = True  # the bench times the model itself; the cache would hide it

    def __init__(self, model: Any, table: dict[str, np.ndarray]) -> None:
        self.model = model
        self.table = table
        self.live = False

    @property
    def model_id(self) -> str:
        return str(self.model.model_id)

    def params(self) -> dict[str, Any]:
        return {"bench": "precomputed queries"}

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        if self.live:
            return np.asarray(self.model.encode(list(texts)))
        return np.stack([self.table[t] for t in texts])


def parse_size(text: str) -> int:
    text = text.strip().lower()
    scale = {"k": 1_000, "m": 1_000_000}.get(text[-1:], 1)
    return int(float(text[:-1] if scale > 1 else text) * scale)


def percentiles(seconds: list[float]) -> tuple[float, float]:
    ms = np.asarray(seconds) * 1e3
    return float(np.percentile(ms, 50)), float(np.percentile(ms, 95))


def load_locomo() -> tuple[list[str], list[str]]:
    """LoCoMo turn texts (with image captions) and probe questions."""
    import memlab

    dataset = memlab.load_dataset("locomo")
    texts = [turn.full_text for conv in dataset for turn in conv.turns()]
    questions = [probe.question for conv in dataset for probe in conv.probes]
    return texts, sorted(set(questions))


def throughput(model: Any, texts: list[str]) -> float:
    """Sentences per second of ``model`` on ``texts`` (model loaded beforehand)."""
    model.encode(texts[:2])
    start = time.perf_counter()
    model.encode(texts)
    return len(texts) / (time.perf_counter() - start)


def synthesise(size: int, texts: list[str], base: np.ndarray, noise: float,
               seed: int) -> tuple[list[Any], np.ndarray]:
    """``size`` units: sampled LoCoMo texts, perturbed real vectors, one minute apart."""
    from memlab.chunkers.base import MemoryUnit
    from memlab.embed import normalize_rows

    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(texts), size)
    vectors = np.empty((size, base.shape[1]), dtype=np.float32)
    for start in range(0, size, 100_000):
        part = picks[start : start + 100_000]
        jitter = rng.standard_normal((len(part), base.shape[1]), dtype=np.float32)
        vectors[start : start + len(part)] = normalize_rows(
            base[part] + noise / np.sqrt(base.shape[1]) * jitter)
    units = [MemoryUnit(f"u{i}", texts[p], "turn", (f"t{i}",), f"s{i // 20}",
                        T0 + timedelta(minutes=i)) for i, p in enumerate(picks.tolist())]
    return units, vectors


def time_queries(strategy: Any, queries: list[str], as_of: datetime,
                 probe: Any) -> tuple[list[float], list[list[str]]]:
    seconds, results = [], []
    for query in queries:
        start = time.perf_counter()
        hits = strategy.search(query, K, as_of, probe=probe)
        seconds.append(time.perf_counter() - start)
        results.append([h.unit.id for h in hits])
    return seconds, results


def measure(name: str, size: int, strategy: Any, build_s: float, ctx: dict[str, Any],
            uses_embedder: bool, note: str = "") -> tuple[Row, list[list[str]]]:
    """Latency rows for one built strategy (search alone, then with query embedding)."""
    embedder, queries = ctx["embedder"], ctx["queries"]
    embedder.live = False
    alone, results = time_queries(strategy, queries, ctx["as_of"], ctx["probe"])
    row = Row("strategy", name, size, build_s, *percentiles(alone), queries=len(queries),
              note=note)
    if uses_embedder:
        embedder.live = True
        with_embed, _ = time_queries(strategy, queries[: ctx["embed_queries"]], ctx["as_of"],
                                     ctx["probe"])
        embedder.live = False
        row.embed_p50_ms, row.embed_p95_ms = percentiles(with_embed)
    return row, results


def recall(approx: list[list[str]], exact: list[list[str]]) -> float:
    found = sum(len(set(a) & set(e)) for a, e in zip(approx, exact, strict=True))
    return found / max(1, sum(len(e) for e in exact))


def built(factory: Callable[[], Any], units: list[Any], vectors: np.ndarray,
          ctx: dict[str, Any]) -> tuple[Any, float]:
    """A strategy indexed on ``units``, and the seconds for ``index`` plus a first search
    (strategies build their indexes lazily, on the first search after new units)."""
    strategy = factory()
    start = time.perf_counter()
    strategy.index(units, vectors)
    strategy.search(ctx["queries"][0], K, ctx["as_of"], probe=ctx["probe"])
    return strategy, time.perf_counter() - start


def bench_strategies(size: int, units: list[Any], vectors: np.ndarray,
                     ctx: dict[str, Any], hnsw_max: int) -> list[Row]:
    """Every strategy's rows; ``ctx["exact"]`` gets exact search's top-10 ids per query."""
    from memlab.retrieval.bm25 import Bm25Strategy
    from memlab.retrieval.dense import DenseStrategy
    from memlab.retrieval.full_context import FullContextStrategy
    from memlab.retrieval.hybrid import HybridStrategy
    from memlab.retrieval.mmr import MmrStrategy
    from memlab.retrieval.none import NoneStrategy
    from memlab.retrieval.oracle import OracleStrategy
    from memlab.retrieval.recency import RecencyStrategy

    emb = ctx["embedder"]
    rows: list[Row] = []

    def run(name: str, factory: Callable[[], Any], uses: bool, extra_s: float = 0.0,
            note: str = "") -> tuple[Any, list[list[str]]]:
        _say(f"  {size:>9,} {name}: building")
        strategy, build_s = built(factory, units, vectors, ctx)
        row, results = measure(name, size, strategy, build_s + extra_s, ctx, uses, note)
        rows.append(row)
        return strategy, results

    bm25: Any = None
    if not ctx["dense_only"]:
        bm25, _ = run("bm25", Bm25Strategy, False)
    dense, exact = run("dense (exact)", partial(DenseStrategy, embedder=emb, cache=False), True)
    ctx["exact"] = exact
    if not ctx["dense_only"]:
        shared = rows[0].build_s + rows[1].build_s
        for fusion in ("rrf", "weighted"):
            run(f"hybrid ({fusion})", partial(HybridStrategy, fusion=fusion, bm25=bm25,
                dense=dense), True, shared, "build includes bm25 + dense")
        run("recency (dense)", partial(RecencyStrategy, base=dense), True, rows[1].build_s,
            "build includes dense")
        run("mmr", partial(MmrStrategy, embedder=emb, cache=False), True)
    kinds = ["faiss-ivf"] + (["faiss-hnsw"] if size <= hnsw_max else [])
    for kind in kinds:
        params = {"exact_below": 0, "cache": True,
                  **(ctx["hnsw_params"] if kind == "faiss-hnsw" else {})}
        approx_dense, approx = run(f"dense ({kind})", partial(
            DenseStrategy, embedder=emb, cache=False, index=kind, index_params=params), True)
        rows[-1].recall_at_10 = recall(approx, exact)
        rows += filtered_rows(kind, size, units, dense, approx_dense, ctx)
        if kind == "faiss-ivf" and not ctx["dense_only"]:
            both = rows[0].build_s + rows[-1].build_s
            run("hybrid (rrf) on faiss-ivf", partial(HybridStrategy, bm25=bm25,
                dense=approx_dense), True, both, "build includes bm25 + dense (faiss-ivf)")
            run("recency on faiss-ivf", partial(RecencyStrategy, base=approx_dense), True,
                rows[-2].build_s, "build includes dense (faiss-ivf)")
        del approx_dense
    del bm25, dense
    if ctx["dense_only"]:
        return rows
    run("full_context", FullContextStrategy, False, note="6,000-token budget")
    run("none", NoneStrategy, False)
    run("oracle", OracleStrategy, False)
    return rows


def filtered_rows(kind: str, size: int, units: list[Any], exact: Any, approx: Any,
                  ctx: dict[str, Any]) -> list[Row]:
    """Exact and approximate search with ``as_of`` letting only a fraction of units be
    seen, and the approximate index's recall@10 against exact search under that filter."""
    out = []
    queries = ctx["queries"]
    for fraction in ctx["fractions"]:
        visible = max(1, int(size * fraction))
        as_of = units[visible - 1].at
        note = f"as_of: {fraction:.0%} of units visible"
        want_s, want = time_queries(exact, queries, as_of, ctx["probe"])
        got_s, got = time_queries(approx, queries, as_of, ctx["probe"])
        if kind == "faiss-ivf":  # the exact row once per fraction
            out.append(Row("strategy", "dense (exact), filtered", size, 0.0,
                           *percentiles(want_s), queries=len(queries), note=note))
        out.append(Row("strategy", f"dense ({kind}), filtered", size, 0.0,
                       *percentiles(got_s), recall_at_10=recall(got, want),
                       queries=len(queries), note=note))
        assert all(int(u[1:]) < visible for hits in got for u in hits), "future unit leaked"
    return out


def bench_stores(size: int, units: list[Any], vectors: np.ndarray, queries: int,
                 folder: Path) -> list[Row]:
    """Write, reload and look up ``units`` in the memory and sqlite stores."""
    from memlab.store.memory import MemoryStore
    from memlab.store.sqlite import SqliteStore

    rng = np.random.default_rng(size)
    lookups = [[units[i].id for i in rng.integers(0, size, 10)] for _ in range(queries)]
    rows = []
    path = folder / f"bench-{size}.db"
    for name, make in (("memory", MemoryStore), ("sqlite", lambda: SqliteStore(str(path)))):
        _say(f"  {size:>9,} store {name}")
        store = make()
        start = time.perf_counter()
        store.add(units, vectors)
        write_s = time.perf_counter() - start
        if name == "sqlite":
            store.close()
            store = make()
        start = time.perf_counter()
        assert len(store.all()) == size and store.vectors().shape == vectors.shape
        load_s = time.perf_counter() - start
        seconds = []
        for ids in lookups:
            begin = time.perf_counter()
            store.get(ids)
            seconds.append(time.perf_counter() - begin)
        row = Row("store", name, size, write_s, *percentiles(seconds), queries=len(lookups),
                  note=f"reload all()+vectors() {load_s:.2f} s")
        if name == "sqlite":
            row.note += f"; file {path.stat().st_size / 1e6:,.0f} MB"
            store.close()
            path.unlink()
        rows.append(row)
    return rows


def bench_pgvector(size: int, units: list[Any], vectors: np.ndarray, ctx: dict[str, Any],
                   dsn: str) -> list[Row]:
    """The pgvector store: bulk load rate (``COPY``, then the HNSW index built once), SQL
    search p50/p95 with ``as_of`` and recall@10 against exact search, reload and lookups."""
    from memlab.store.pgvector import PgvectorStore

    _say(f"  {size:>9,} store pgvector: loading with COPY")
    table = f"bench_{size}"
    store = PgvectorStore(dsn=dsn, table=table)
    with store._tx() as cur:
        cur.execute(f"DROP TABLE IF EXISTS {table}")
        cur.execute(f"DROP TABLE IF EXISTS {table}_versions")
    store.close()
    store = PgvectorStore(dsn=dsn, table=table)
    start = time.perf_counter()
    for first in range(0, size, 100_000):
        store.bulk_add(units[first : first + 100_000], vectors[first : first + 100_000],
                       index=False)
    copy_s = time.perf_counter() - start
    _say(f"  {size:>9,} store pgvector: building the HNSW index")
    start = time.perf_counter()
    store.build_index(vectors.shape[1], ctx.get("pg_work_mem", "1GB"))
    index_s = time.perf_counter() - start
    write_s = copy_s + index_s
    table_q = ctx["embedder"].table
    rows: list[Row] = []
    for ef_search in ctx.get("pg_ef_search", [store.ef_search]):
        store.ef_search = ef_search  # a search-time setting (SET LOCAL hnsw.ef_search)
        seconds, results = [], []
        for query in ctx["queries"]:
            begin = time.perf_counter()
            hits = store.search(table_q[query], K, ctx["as_of"])
            seconds.append(time.perf_counter() - begin)
            results.append([h[0] for h in hits])
        rows.append(Row("strategy", f"pgvector store (HNSW in SQL, ef_search {ef_search})",
                        size, write_s, *percentiles(seconds),
                        recall_at_10=recall(results, ctx["exact"]), queries=len(seconds),
                        note=f"build = COPY {copy_s:.1f} s ({size / copy_s:,.0f} units/s) + "
                        f"HNSW index {index_s:.1f} s (m {store.hnsw_m}, ef_construction "
                        f"{store.ef_construction}); search alone, as_of in SQL"))
    rng = np.random.default_rng(size)
    lookups = [[units[i].id for i in rng.integers(0, size, 10)] for _ in ctx["queries"]]
    store.close()
    store = PgvectorStore(dsn=dsn, table=table)
    begin = time.perf_counter()
    assert len(store.all()) == size and store.vectors().shape == vectors.shape
    load_s = time.perf_counter() - begin
    gets = []
    for ids in lookups:
        begin = time.perf_counter()
        store.get(ids)
        gets.append(time.perf_counter() - begin)
    with store._tx() as cur:
        cur.execute(f"DROP TABLE {table}")
    store.close()
    return [*rows, Row("store", "pgvector", size, write_s, *percentiles(gets),
                        queries=len(gets), note=f"reload all()+vectors() {load_s:.2f} s; "
                        f"{size / write_s:,.0f} units/s loaded and indexed")]


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _fmt(value: float | None, digits: int = 2) -> str:
    return "—" if value is None else f"{value:,.{digits}f}"


def render(rows: list[Row], header: dict[str, Any]) -> str:
    lines = [f"# memlab search benchmark ({header['date']})", ""]
    lines += [f"- {k}: {v}" for k, v in header.items() if k != "date"]
    lines += ["", "| units | strategy | build s | search p50 ms | p95 ms | +embed p50 ms "
              "| +embed p95 ms | recall@10 | queries | note |", "|" + "---|" * 10]
    for r in (r for r in rows if r.table == "strategy"):
        lines.append(f"| {r.size:,} | {r.name} | {_fmt(r.build_s)} | {_fmt(r.p50_ms, 3)} | "
                     f"{_fmt(r.p95_ms, 3)} | {_fmt(r.embed_p50_ms)} | {_fmt(r.embed_p95_ms)} | "
                     f"{_fmt(r.recall_at_10, 3)} | {r.queries} | {r.note} |")
    lines += ["", "| units | store | add s | get(10 ids) p50 ms | p95 ms | lookups | note |",
              "|" + "---|" * 7]
    for r in (r for r in rows if r.table == "store"):
        lines.append(f"| {r.size:,} | {r.name} | {_fmt(r.build_s)} | {_fmt(r.p50_ms, 3)} | "
                     f"{_fmt(r.p95_ms, 3)} | {r.queries} | {r.note} |")
    return "\n".join(lines)


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m memlab.bench search", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="10k,100k,1M", help="comma-separated unit counts")
    parser.add_argument("--queries", type=count, default=200,
                        help="queries per size (fewer at 1M: exact search is slow there)")
    parser.add_argument("--embed-queries", type=count, default=50,
                        help="queries timed with live query embedding")
    parser.add_argument("--throughput-sample", type=count, default=1024,
                        help="LoCoMo turns embedded to measure sentences/s")
    parser.add_argument("--noise", type=float, default=0.5,
                        help="norm of the Gaussian noise added to each real embedding")
    parser.add_argument("--hnsw-max", default="1M",
                        help="largest size that also builds the (slow) faiss HNSW index")
    parser.add_argument("--hnsw-threads", type=count, default=1,
                        help="threads building HNSW (1 = a reproducible graph)")
    parser.add_argument("--hnsw-param", action="append", default=[], metavar="KEY=INT",
                        help="a faiss HNSW index parameter (hnsw_m, ef_construction, "
                        "ef_search, max_ef_search), repeatable; default: dense's own")
    parser.add_argument("--fractions", type=fractions, default=[0.5, 0.1],
                        help="visible fractions of units for the as_of-filtered rows")
    parser.add_argument("--dense-only", action="store_true",
                        help="only dense rows (exact, faiss, filtered) and no memory/sqlite "
                        "store rows (--store rows still run)")
    parser.add_argument("--backend", default="onnx", choices=("torch", "onnx", "onnx-int8"),
                        help="the MiniLM backend embedding corpus and queries")
    parser.add_argument("--quick", action="store_true",
                        help="10k units, 50 queries, 256-turn throughput sample")
    parser.add_argument("--json", type=Path, help="also write the rows here as JSON")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--pg-ef-search", default="100,400",
                        help="pgvector hnsw.ef_search values searched (one row each)")
    parser.add_argument("--pg-work-mem", default="1GB",
                        help="maintenance_work_mem for pgvector's HNSW build (the graph "
                        "should fit: ~2 GB at 1M 384-d units)")
    parser.add_argument("--store", action="append", default=[], choices=["pgvector"],
                        help="also measure this store (pgvector: $MEMLAB_PG_DSN, or a "
                        "local PostgreSQL started for the bench)")
    args = parser.parse_args(argv)
    if args.quick:
        args.sizes, args.queries, args.embed_queries = "10k", 50, 20
        args.throughput_sample = 256
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(list(sys.argv[1:] if argv is None else argv))
    if args.store:  # a bad size fails now, not after loading 1M rows
        from memlab.errors import ConfigError
        from memlab.store.pgvector import check_work_mem

        try:
            check_work_mem(args.pg_work_mem, "--pg-work-mem")
        except ConfigError as exc:
            raise SystemExit(str(exc)) from None
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from memlab.embed import CachedEmbedder
    from memlab.embed.sentence_transformer import SentenceTransformerEmbedder

    texts, questions = load_locomo()
    model = SentenceTransformerEmbedder(backend=args.backend)
    _say(f"embedding throughput on {args.throughput_sample} LoCoMo turns ...")
    rate = throughput(model, texts[: args.throughput_sample])
    _say("embedding all LoCoMo turns and questions (cached after the first run) ...")
    cached = CachedEmbedder(model)
    base = cached.encode(texts)
    rng = np.random.default_rng(args.seed)
    picked = [questions[i] for i in rng.permutation(len(questions))[: args.queries]]
    embedder = QueryEmbedder(model, dict(zip(picked, cached.encode(picked), strict=True)))
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="memlab-bench-") as folder, _postgres(args) as dsn:
        args.dsn = dsn
        for size in [parse_size(s) for s in args.sizes.split(",")]:
            rows += bench_size(size, texts, base, picked, embedder, args, Path(folder))
    header = _header(args, rate, len(texts))
    print(render(rows, header))
    if args.json:
        args.json.write_text(json.dumps({"header": header, "rows": [asdict(r) for r in rows]},
                                        indent=2))
    return 0


def bench_size(size: int, texts: list[str], base: np.ndarray, questions: list[str],
               embedder: QueryEmbedder, args: argparse.Namespace, folder: Path) -> list[Row]:
    from memlab.data.schema import Probe

    units, vectors = synthesise(size, texts, base, args.noise, args.seed)
    n_queries = min(len(questions), args.queries if args.dense_only else
                    max(20, args.queries * 100_000 // max(size, 100_000)))
    as_of = units[-1].at
    probe = Probe("bench", questions[0], "", tuple(f"t{i}" for i in range(0, size, size // 5)),
                  (), "bench", as_of)
    ctx = {"embedder": embedder, "queries": questions[:n_queries], "as_of": as_of,
           "probe": probe, "embed_queries": min(n_queries, args.embed_queries),
           "dense_only": args.dense_only,
           "hnsw_params": {"threads": args.hnsw_threads, **hnsw_params(args.hnsw_param)},
           "fractions": args.fractions,
           "pg_ef_search": [int(e) for e in args.pg_ef_search.split(",")],
           "pg_work_mem": args.pg_work_mem}
    rows = bench_strategies(size, units, vectors, ctx, parse_size(args.hnsw_max))
    if not args.dense_only:
        rows += bench_stores(size, units, vectors, n_queries, folder)
    if args.dsn:
        rows += bench_pgvector(size, units, vectors, ctx, args.dsn)
    return rows


def hnsw_params(pairs: list[str]) -> dict[str, int]:
    """``--hnsw-param KEY=INT`` pairs as index parameters (a clear error for a bad one)."""
    allowed = ("hnsw_m", "ef_construction", "ef_search", "max_ef_search")
    out: dict[str, int] = {}
    for pair in pairs:
        key, _, value = pair.partition("=")
        if key not in allowed or not value.isdigit():
            raise SystemExit(f"--hnsw-param {pair!r}: expected KEY=INT with KEY one of "
                             f"{', '.join(allowed)}")
        out[key] = int(value)
    return out


@contextmanager
def _postgres(args: argparse.Namespace) -> Iterator[str | None]:
    """The DSN pgvector is measured on: ``$MEMLAB_PG_DSN`` or a local server (or None)."""
    if "pgvector" not in args.store:
        yield None
    elif os.environ.get("MEMLAB_PG_DSN"):
        yield os.environ["MEMLAB_PG_DSN"]
    else:
        from memlab.testing.postgres import LocalPostgres

        with LocalPostgres() as pg:
            yield pg.dsn


def _header(args: argparse.Namespace, rate: float, turns: int) -> dict[str, Any]:
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{os.cpu_count()} cores, load average {load:.1f} at the end (shared)",
        "embedder": f"all-MiniLM-L6-v2 (bundled), CPU, batch 64, backend {args.backend}",
        "embedding throughput": f"{rate:,.0f} sentences/s on {args.throughput_sample} "
                                f"LoCoMo turns",
        "corpus": f"SYNTHESISED: unit texts sampled with replacement from {turns:,} real "
                  f"LoCoMo turns; unit vectors = the real MiniLM embedding of that turn + "
                  f"Gaussian noise of norm {args.noise}, renormalised; queries = real "
                  "LoCoMo questions embedded by MiniLM",
        "search": f"k={K}, as_of = newest unit (every unit visible), one query at a time; "
                  "'+embed' adds embedding the query with the real model (uncached)",
        "build": "index() plus the first search (indexes are built lazily); HNSW "
                 f"built with {args.hnsw_threads} thread(s)",
        "filtered": "'filtered' rows: as_of lets only the stated fraction of units (the "
                    "oldest) be seen; their recall@10 is against exact search under the "
                    "same filter",
    }
