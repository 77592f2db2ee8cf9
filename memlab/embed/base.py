"""The embedder protocol and helpers shared by every embedder."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np

from memlab.errors import ConfigError


@runtime_checkable
class Embedder(Protocol):
    """Turns texts into vectors.

    ``encode`` returns a float32 array of shape ``(len(texts), dim)`` whose rows are
    L2-normalised, so a dot product is a cosine similarity. ``model_id`` names the model
    *and* its weights (a digest or revision where one is known): it is the embedding
    cache's key, so two models that could give different vectors never share one.
    """

    @property
    def model_id(self) -> str:
        ...

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        ...

    def params(self) -> dict[str, Any]:
        ...


def normalize_rows(matrix: np.ndarray) -> np.ndarray:
    """Float32 copy of ``matrix`` with unit-length rows (all-zero rows stay zero)."""
    out = np.asarray(matrix, dtype=np.float32)
    if out.ndim != 2:
        raise ValueError(f"expected a 2-D matrix of embeddings, got shape {out.shape}")
    norms = np.linalg.norm(out, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    return np.ascontiguousarray(out / norms, dtype=np.float32)


EmbedderSpec = str | Mapping[str, Any] | Embedder


def build_embedder(spec: EmbedderSpec) -> Embedder:
    """An embedder from a registry name, a ``{name, params}`` spec or an instance."""
    from memlab.spec import build, is_spec

    if not is_spec(spec) and not isinstance(spec, Embedder):
        raise ConfigError(f"cannot use {spec!r} as an embedder: give a name, a spec or an "
                          "instance")
    embedder: Embedder = build("embedder", spec)
    return embedder
