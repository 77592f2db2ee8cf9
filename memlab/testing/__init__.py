"""Test doubles that ship with memlab: a loopback server speaking Ollama's HTTP API, and
real servers started and stopped by tests (:mod:`memlab.testing.postgres`: PostgreSQL with
pgvector; :mod:`memlab.testing.ray_cluster`: a Ray head), all on 127.0.0.1.

Imported lazily so ``python -m memlab.testing.fake_ollama`` runs the module only once.
"""

from __future__ import annotations

from typing import Any

__all__ = ["FakeModel", "FakeOllama"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from memlab.testing import fake_ollama

        return getattr(fake_ollama, name)
    raise AttributeError(f"module 'memlab.testing' has no attribute {name!r}")
