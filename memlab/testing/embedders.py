"""An embedder double that counts what reaches the model (cache and batching tests)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from memlab.embed.base import Embedder


class CountingEmbedder:
    """Wraps an embedder and records every call it receives (the model-call counter)."""

    def __init__(self, inner: Embedder, model_id: str | None = None) -> None:
        self.inner = inner
        self._model_id = model_id or inner.model_id
        self.calls: list[list[str]] = []

    @property
    def model_id(self) -> str:
        return self._model_id

    def params(self) -> dict[str, Any]:
        return self.inner.params()

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        self.calls.append(list(texts))
        return self.inner.encode(texts)
