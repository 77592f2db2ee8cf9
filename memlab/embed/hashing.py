"""A deterministic feature-hashing embedder: the fast, honest test double.

Each lower-cased word is hashed (BLAKE2b, so the result never depends on Python's
per-process hash seed) to two of ``dim`` buckets, each with a sign (two buckets, so one
unlucky collision cannot cancel a word out); a text's vector is the signed bucket
counts, L2-normalised. Cosine similarity therefore measures shared words,
not meaning — good enough to test retrieval logic in milliseconds, never a stand-in for
a semantic model in a reported result.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence

import numpy as np

from memlab.embed.base import normalize_rows
from memlab.errors import check_number
from memlab.spec import Component

_WORD = re.compile(r"\w+")


class HashEmbedder(Component):
    """Deterministic hashed bag of words (a test double, not a semantic model)."""

    local_identity = True

    cheap = True  # faster to compute than to look up: never worth caching

    def __init__(self, dim: int = 512) -> None:
        self.dim = dim
        self._buckets: dict[str, tuple[tuple[int, float], ...]] = {}

    @property
    def model_id(self) -> str:
        return f"hash:blake2b-v2:{self.dim}"

    def check_params(self) -> None:
        """Raise a ConfigError for a dim below 1 (config validation runs it)."""
        check_number("embedder 'hash': dim", self.dim, low=1, integer=True)

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        self.check_params()
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for row, text in enumerate(texts):
            for word in _WORD.findall(text.lower()):
                for bucket, sign in self._bucket(word):
                    out[row, bucket] += sign
        return normalize_rows(out)

    def _bucket(self, word: str) -> tuple[tuple[int, float], ...]:
        found = self._buckets.get(word)
        if found is None:
            digest = hashlib.blake2b(word.encode(), digest_size=16).digest()
            halves = (int.from_bytes(digest[:8], "big"), int.from_bytes(digest[8:], "big"))
            found = tuple((h % self.dim, 1.0 if (h >> 63) & 1 else -1.0) for h in halves)
            self._buckets[word] = found
        return found
