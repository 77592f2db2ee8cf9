"""An ensemble of embedders: their vectors side by side, so a cosine averages theirs.

Each part's unit-length vector is scaled by ``sqrt(w / sum(weights))`` and the parts are
concatenated; the result is again unit length, and the dot product of two such vectors is
``sum(w * cosine_part) / sum(weights)`` — the weighted mean of the parts' cosine
similarities. Two checkpoints of one fine-tuning run, or a fine-tuned model and the model
it started from, then rank by their averaged similarity without any new training.

Every part goes through the persistent embedding cache under its own model id (``cache``:
True for the default file, a path, or False), so an ensemble of models already used embeds
nothing new (the ensemble itself is not cached a second time: it is a concatenation of
cached vectors).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from functools import cached_property
from typing import ClassVar

import numpy as np

from memlab.embed.base import Embedder, EmbedderSpec, build_embedder, normalize_rows
from memlab.errors import ConfigError
from memlab.spec import Component


class EnsembleEmbedder(Component):
    """Several embedders' vectors concatenated, weighted: cosine = their weighted mean."""

    nested: ClassVar[Mapping[str, str]] = {"embedders": "embedder"}
    local_identity = True
    cheap = True  # its parts are cached one by one

    def __init__(self, embedders: Sequence[EmbedderSpec] = (),
                 weights: Sequence[float] | None = None, cache: bool | str = True) -> None:
        self.embedders = list(embedders)
        self.weights = None if weights is None else [float(w) for w in weights]
        self.cache = cache

    def check_params(self) -> None:
        """Raise a ConfigError for fewer than two parts or bad weights (config validation
        runs it)."""
        self._weights  # noqa: B018

    @cached_property
    def _weights(self) -> list[float]:
        """The weights (1 each when none are given), checked."""
        if len(self.embedders) < 2:
            raise ConfigError("the ensemble embedder needs at least two embedders "
                              f"(embedders: [...]), got {len(self.embedders)}")
        weights = [1.0] * len(self.embedders) if self.weights is None else self.weights
        if len(weights) != len(self.embedders):
            raise ConfigError(f"the ensemble embedder has {len(self.embedders)} embedders "
                              f"but {len(weights)} weights")
        if any(not math.isfinite(w) or w < 0 for w in weights) or sum(weights) <= 0:
            raise ConfigError(f"ensemble weights must be >= 0 with a positive sum, got {weights}")
        return weights

    @cached_property
    def parts(self) -> list[Embedder]:
        """The part embedders, each behind the persistent cache."""
        from memlab.embed.cache import maybe_cached

        self._weights  # noqa: B018 - a bad ensemble fails before any model loads
        return [maybe_cached(build_embedder(spec), self.cache) for spec in self.embedders]

    @cached_property
    def scales(self) -> np.ndarray:
        weights = np.asarray(self._weights, dtype=np.float64)
        return np.sqrt(weights / weights.sum()).astype(np.float32)

    @property
    def model_id(self) -> str:
        inner = ", ".join(f"{w:g} x {part.model_id}"
                          for w, part in zip(self._weights, self.parts, strict=True))
        return f"ensemble({inner})"

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, 0), dtype=np.float32)
        blocks = [part.encode(texts) * scale  # parts return unit rows (the protocol)
                  for part, scale in zip(self.parts, self.scales, strict=True)]
        return normalize_rows(np.concatenate(blocks, axis=1))
