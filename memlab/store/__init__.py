"""Stores: where memory units and their vectors live, per user/namespace.

- ``memory``: numpy arrays in this process (gone when it exits).
- ``sqlite``: units, metadata and vectors in one SQLite file (the Letta seed's
  ``archival.db``), one namespace per user; survives reopening.
- ``pgvector``: the same rows in PostgreSQL with pgvector (a DSN), HNSW search in SQL
  filtered by namespace and ``as_of``; many processes may share it.

All follow :class:`memlab.store.base.Store`. Retrieval strategies index units in RAM;
a store is what a live memory reloads them from (``strategy.index(store.all(),
store.vectors())`` never re-embeds).
"""

from __future__ import annotations

from memlab.registry import Registry
from memlab.store.base import Store, UnitNotFound

registry: Registry[Store] = Registry("store")
registry.register("memory", "memlab.store.memory:MemoryStore")
registry.register("sqlite", "memlab.store.sqlite:SqliteStore")
registry.register("pgvector", "memlab.store.pgvector:PgvectorStore")

__all__ = ["Store", "UnitNotFound", "registry"]
