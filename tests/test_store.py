"""Stores: every backend round-trips units and vectors and isolates namespaces; sqlite and
pgvector persist; pgvector searches in SQL (HNSW, ``as_of``) on a real PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest

from memlab.chunkers.base import MemoryUnit
from memlab.errors import MemlabError
from memlab.store import Store, UnitNotFound, registry
from memlab.store.sqlite import SqliteStore

T0 = datetime(2024, 3, 1, 9, 30, 15, 123456, tzinfo=UTC)


def unit(i: int, **metadata: object) -> MemoryUnit:
    return MemoryUnit(
        id=f"s1/turn/{i}",
        text=f"unit number {i} — ünïcode ✓",
        kind="turn",
        source_turn_ids=(f"t{i}", f"t{i + 1}"),
        session_id="s1",
        at=T0 + timedelta(minutes=i),
        metadata=metadata,
    )


def vecs(n: int, dim: int = 4, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)


@pytest.fixture(params=["memory", "sqlite", "pgvector"])
def make_store(request, tmp_path: Path) -> Callable[..., Store]:
    def make(namespace: str = "default") -> Store:
        params: dict[str, object] = {"namespace": namespace}
        if request.param == "sqlite":
            params["path"] = str(tmp_path / "archival.db")
        if request.param == "pgvector":
            pg = request.getfixturevalue("postgres")
            params.update(dsn=pg.dsn, table=request.getfixturevalue("pg_table"))
        return registry.build(request.param, params)

    return make


def test_registry_names() -> None:
    assert registry.names() == ["memory", "pgvector", "sqlite"]


def test_round_trip_keeps_units_and_vectors_exactly(make_store) -> None:
    store = make_store()
    units = [unit(0, speaker="Ann", tags=("a", "b"), seen=T0, day=date(2024, 3, 1),
                  nested={"__tuple__": [1], "x": [1, 2.5, None, True]}),
             unit(1), unit(2, score=0.25)]
    vectors = vecs(3)
    store.add(units, vectors)
    assert isinstance(store, Store)
    assert store.count() == 3
    assert store.all() == units
    assert store.get(["s1/turn/2", "s1/turn/0"]) == [units[2], units[0]]
    np.testing.assert_array_equal(store.vectors(), vectors)
    np.testing.assert_array_equal(store.vectors(["s1/turn/1"]), vectors[1:2])
    got = store.get(["s1/turn/0"])[0]
    assert got.metadata["tags"] == ("a", "b") and got.at.tzinfo is not None
    assert got.at == T0 and got.at.microsecond == 123456


def test_non_utc_offsets_survive(make_store) -> None:
    store = make_store()
    plus2 = MemoryUnit("x", "t", "fact", (), "s",
                       datetime(2024, 1, 1, 12, tzinfo=timezone(timedelta(hours=2))))
    store.add([plus2])
    assert store.get(["x"])[0] == plus2
    assert store.get(["x"])[0].at.utcoffset() == timedelta(hours=2)


def test_re_adding_an_id_replaces_it_in_place(make_store) -> None:
    store = make_store()
    store.add([unit(0), unit(1), unit(2)], vecs(3))
    changed = MemoryUnit("s1/turn/1", "new text", "turn", ("t9",), "s1", T0)
    store.add([changed], np.ones((1, 4), dtype=np.float32))
    assert [u.id for u in store.all()] == ["s1/turn/0", "s1/turn/1", "s1/turn/2"]
    assert store.all()[1] == changed
    np.testing.assert_array_equal(store.vectors()[1], np.ones(4))


def test_delete_and_missing_ids(make_store) -> None:
    store = make_store()
    vectors = vecs(4)
    store.add([unit(i) for i in range(4)], vectors)
    assert store.delete(["s1/turn/1", "s1/turn/3", "nope"]) == 2
    assert [u.id for u in store.all()] == ["s1/turn/0", "s1/turn/2"]
    np.testing.assert_array_equal(store.vectors(), vectors[[0, 2]])
    with pytest.raises(UnitNotFound, match="'s1/turn/1'"):
        store.get(["s1/turn/0", "s1/turn/1"])
    store.add([unit(7)], vecs(1, seed=7))
    np.testing.assert_array_equal(store.vectors(), np.vstack([vectors[[0, 2]], vecs(1, seed=7)]))


def test_namespaces_are_isolated(make_store) -> None:
    alice = make_store("alice")
    bob = alice.namespace("bob")
    alice.add([unit(0), unit(1)], vecs(2, seed=1))
    bob.add([unit(0)], vecs(1, seed=2))
    assert alice.count() == 2 and bob.count() == 1
    assert alice.namespaces() == bob.namespaces() == ["alice", "bob"]
    np.testing.assert_array_equal(bob.vectors(), vecs(1, seed=2))
    bob.delete(["s1/turn/0"])
    assert alice.count() == 2 and bob.count() == 0
    assert alice.namespace("carol").all() == []


def test_vectors_are_optional_but_never_silently_missing(make_store) -> None:
    store = make_store()
    store.add([unit(0)])
    store.add([unit(1)], vecs(1))
    np.testing.assert_array_equal(store.vectors(["s1/turn/1"]), vecs(1))
    with pytest.raises(MemlabError, match="'s1/turn/0' have no vector"):
        store.vectors()
    with pytest.raises(MemlabError, match="dim 8 cannot join stored ones of dim 4"):
        store.add([unit(2)], vecs(1, dim=8))
    with pytest.raises(MemlabError, match=r"need a \(2, dim\) vector matrix"):
        store.add([unit(3), unit(4)], vecs(1))
    with pytest.raises(MemlabError, match="appears twice"):
        store.add([unit(5), unit(5)])
    assert store.count() == 2


def test_sqlite_refuses_unstorable_metadata_naming_unit_and_key(tmp_path: Path) -> None:
    store = SqliteStore(path=str(tmp_path / "a.db"))
    with pytest.raises(MemlabError, match=r"unit 's1/turn/0': metadata.bad: set value"):
        store.add([unit(0, bad={1, 2})])
    assert store.count() == 0


def test_sqlite_survives_reopening(tmp_path: Path) -> None:
    path = str(tmp_path / "deep" / "archival.db")
    first = SqliteStore(path=path, namespace="alice")
    units = [unit(i, n=i) for i in range(50)]
    vectors = vecs(50, dim=384)
    first.add(units, vectors)
    first.namespace("bob").add([unit(0)])
    first.close()
    again = SqliteStore(path=path, namespace="alice")
    assert again.all() == units
    np.testing.assert_array_equal(again.vectors(), vectors)
    assert again.namespaces() == ["alice", "bob"]
    assert again.params() == {"path": path, "namespace": "alice"}


def test_sqlite_default_path_and_unopenable_file(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    store = SqliteStore()
    assert store.file == tmp_path / "memlab" / "archival.db"
    store.add([unit(0)])
    assert store.file.is_file()
    bad = tmp_path / "not-a-db"
    bad.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(MemlabError, match=f"sqlite store {bad}: cannot open"):
        SqliteStore(path=str(bad)).count()


def test_pgvector_search_ranks_in_sql_and_never_returns_a_later_unit(postgres, pg_table) -> None:
    from memlab.store.pgvector import PgvectorStore

    store = PgvectorStore(dsn=postgres.dsn, table=pg_table, namespace="alice")
    vectors = vecs(300, dim=16, seed=3)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    units = [unit(i) for i in range(300)]
    store.add(units, vectors)
    store.namespace("bob").add([unit(0)], vectors[:1] * -1)
    query = vectors[123] + 0.01 * vecs(1, dim=16, seed=4)[0]
    exact = np.argsort(-(vectors @ query), kind="stable")[:10]
    hits = store.search(query, 10)
    assert [h[0] for h in hits] == [units[i].id for i in exact]
    np.testing.assert_allclose([h[1] for h in hits], (vectors @ query)[exact], rtol=1e-5)
    as_of = units[49].at  # inclusive: units 0..49 are visible
    visible = np.argsort(-(vectors[:50] @ query), kind="stable")[:10]
    cut = store.search(query, 10, as_of)
    assert [h[0] for h in cut] == [units[i].id for i in visible]
    assert len(store.search(query, 10, units[2].at)) == 3
    assert store.namespace("bob").search(query, 10) == [(units[0].id, pytest.approx(
        float(-(vectors[0] @ query)), rel=1e-5))]
    with store._tx() as cur:
        cur.execute("SELECT indexdef FROM pg_indexes WHERE tablename = %s", (pg_table,))
        defs = " ".join(r[0] for r in cur.fetchall())
    assert "USING hnsw" in defs and "vector_ip_ops" in defs
    store.close()


def test_pgvector_survives_reopening_and_another_process_sees_it(postgres, pg_table) -> None:
    from memlab.store.pgvector import PgvectorStore

    first = PgvectorStore(dsn=postgres.dsn, table=pg_table, namespace="alice")
    units = [unit(i, n=i) for i in range(50)]
    vectors = vecs(50, dim=384)
    first.add(units, vectors)
    first.close()
    again = registry.build("pgvector", {"dsn": postgres.dsn, "table": pg_table,
                                        "namespace": "alice"})
    assert again.all() == units
    np.testing.assert_array_equal(again.vectors(), vectors)
    assert again.params()["namespace"] == "alice" and again.params()["dsn"] == postgres.dsn


def test_pgvector_errors_name_the_store(postgres, pg_table, monkeypatch) -> None:
    from memlab.errors import ConfigError
    from memlab.store.pgvector import PgvectorStore

    monkeypatch.delenv("MEMLAB_PG_DSN", raising=False)
    with pytest.raises(ConfigError, match="no dsn"):
        PgvectorStore().count()
    with pytest.raises(ConfigError, match="not a plain SQL name"):
        PgvectorStore(dsn=postgres.dsn, table="x; DROP TABLE y").count()
    with pytest.raises(MemlabError, match=r"pgvector store postgresql://u:\*\*\*@127.0.0.1:9/"):
        PgvectorStore(dsn="postgresql://u:secret@127.0.0.1:9/db").count()
    store = PgvectorStore(dsn=postgres.dsn, table=pg_table)
    with pytest.raises(MemlabError, match=r"unit 's1/turn/0': metadata.bad: set value"):
        store.add([unit(0, bad={1, 2})])
    monkeypatch.setenv("MEMLAB_PG_DSN", postgres.dsn)
    assert PgvectorStore(table=pg_table).count() == 0


def test_bench_rows_for_pgvector_measure_recall_against_exact_search(postgres) -> None:
    from memlab.bench.search import QueryEmbedder, bench_pgvector, synthesise

    rng = np.random.default_rng(0)
    base = rng.standard_normal((40, 32)).astype(np.float32)
    units, vectors = synthesise(600, [f"text {i}" for i in range(40)], base, 0.5, 0)
    queries = [f"q{i}" for i in range(20)]
    table = {q: vectors[i * 7] for i, q in enumerate(queries)}
    exact = [[units[j].id for j in np.argsort(-(vectors @ table[q]), kind="stable")[:10]]
             for q in queries]
    ctx = {"embedder": QueryEmbedder(None, table), "queries": queries, "exact": exact,
           "as_of": units[-1].at, "pg_ef_search": [40, 200]}
    search, wider, store = bench_pgvector(600, units, vectors, ctx, postgres.dsn)
    assert search.name.endswith("ef_search 40)") and wider.name.endswith("ef_search 200)")
    assert wider.recall_at_10 is not None and wider.recall_at_10 >= 0.9
    assert search.recall_at_10 is not None and search.recall_at_10 <= wider.recall_at_10
    assert search.queries == store.queries == 20 and store.name == "pgvector"
    assert search.p50_ms is not None and store.p95_ms is not None


def test_pgvector_bulk_add_copies_then_indexes_and_refuses_stored_ids(postgres,
                                                                     pg_table) -> None:
    """bulk_add (COPY, index built once after) stores what add stores and ranks the same."""
    from memlab.store.pgvector import PgvectorStore

    units = [unit(i, n=i) for i in range(300)]
    vectors = vecs(300, dim=16, seed=3)
    bulk = PgvectorStore(dsn=postgres.dsn, table=pg_table, namespace="bulk")
    bulk.add(units[:1], vectors[:1])  # an index exists and is rebuilt around the load
    bulk.bulk_add(units[1:], vectors[1:])
    assert bulk.all() == units
    np.testing.assert_array_equal(bulk.vectors(), vectors)
    query = vecs(1, dim=16, seed=4)[0]
    cut = units[149].at
    want = np.argsort(-(vectors[:150] @ query), kind="stable")[:10]
    assert [h[0] for h in bulk.search(query, 10, cut)] == [units[i].id for i in want]
    with bulk._tx() as cur:
        cur.execute("SELECT indexdef FROM pg_indexes WHERE tablename = %s", (pg_table,))
        assert "USING hnsw" in " ".join(r[0] for r in cur.fetchall())
    with pytest.raises(MemlabError, match=f"table {pg_table} namespace 'bulk'"):
        bulk.bulk_add(units[5:6], vectors[5:6])
    more = [unit(i, n=i) for i in range(300, 302)]
    for load in (lambda: bulk.bulk_add(more, vecs(2, dim=16, seed=5), "lots"),
                 lambda: bulk.build_index(16, "1GB'; DROP TABLE x; --")):
        with pytest.raises(MemlabError, match=r"maintenance_work_mem .* is not a size"):
            load()
    assert bulk.count() == 300  # the bad size was refused before anything was copied
    bulk.close()


def test_bench_search_refuses_bad_index_settings_before_any_work() -> None:
    from memlab.bench.search import hnsw_params, main

    with pytest.raises(SystemExit, match="--pg-work-mem: maintenance_work_mem 'lots'"):
        main(["--store", "pgvector", "--pg-work-mem", "lots"])
    assert hnsw_params(["ef_construction=200", "hnsw_m=48"]) == {"ef_construction": 200,
                                                               "hnsw_m": 48}
    for bad in ("m=32", "ef_search=wide", "ef_search"):
        with pytest.raises(SystemExit, match="expected KEY=INT"):
            hnsw_params([bad])
