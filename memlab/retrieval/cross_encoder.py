"""Cross-encoder reranking: the base strategy's best ``top_n`` re-ordered by a
sentence-transformers ``CrossEncoder`` reading (question, unit text) pairs.

``model`` is a local folder (any CrossEncoder saved with ``save_pretrained``, or a
Hugging Face sequence-classification model with one label) or, for users with network
access, a Hub name such as ``cross-encoder/ms-marco-MiniLM-L6-v2`` (downloaded by
sentence-transformers into its cache on first use; memlab never downloads one itself).
A model that cannot be loaded is a :class:`memlab.errors.ConfigError` naming it.

Scores: the reranked units ``1 + sigmoid(logit)`` (in [1, 2]; the model's own activation
is not used, so every model is on one scale), the rest of the base ranking
``1 / (1 + rank)`` below them, as ``llm_rerank`` does. Ties keep base order. The model
runs on CPU by default (``device``); its cost is the search latency the harness times
(a batch of ``top_n`` pairs per probe, no LLM call). The loaded model is shared by every
strategy of a process that names the same model and device.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from functools import cached_property, lru_cache
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from memlab.data.schema import Probe
from memlab.errors import ConfigError
from memlab.retrieval.base import Hit
from memlab.retrieval.ranking import select_top
from memlab.retrieval.wrap import BaseSpec, Wrapper
from memlab.spec import Component

#: The usual public model, for users with network access.
DEFAULT_MODEL = "cross-encoder/ms-marco-MiniLM-L6-v2"


@lru_cache(maxsize=4)
def load_cross_encoder(model: str, device: str, max_length: int) -> Any:
    """The ``CrossEncoder`` for ``model`` (a folder, else a Hub name), loaded once."""
    try:
        from sentence_transformers import CrossEncoder
    except ImportError as exc:  # pragma: no cover - a core dependency
        raise ConfigError(f"cross_encoder needs sentence-transformers ({exc})") from None
    local = Path(model).expanduser()
    try:
        return CrossEncoder(str(local) if local.is_dir() else model, device=device,
                            max_length=max_length, local_files_only=local.is_dir())
    except Exception as exc:  # OSError, HTTP errors, bad configs: all "cannot load"
        raise ConfigError(
            f"cross_encoder: model {model!r} could not be loaded ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0] if str(exc) else ''}). Give a local folder holding a "
            "CrossEncoder, or a Hugging Face model name with network access to the Hub "
            "(it is downloaded once into the Hugging Face cache).") from None


class CrossEncoderStrategy(Wrapper, Component):
    """A base ranking whose best ``top_n`` are re-ordered by a cross-encoder."""

    nested: ClassVar[Mapping[str, str]] = {"base": "retrieval"}

    def __init__(
        self,
        k: int | None = 10,
        threshold: float | None = None,
        base: BaseSpec = "hybrid",
        top_n: int = 20,
        model: str = DEFAULT_MODEL,
        device: str = "cpu",
        batch_size: int = 32,
        max_length: int = 256,
    ) -> None:
        self.k = k
        self.threshold = threshold
        self.base = base
        self.top_n = top_n
        self.model = model
        self.device = device
        self.batch_size = batch_size
        self.max_length = max_length

    def check_params(self) -> None:
        if self.top_n < 1:
            raise ConfigError(f"cross_encoder: top_n must be >= 1, got {self.top_n}")
        self.encoder  # noqa: B018  (a model that cannot load fails before indexing)

    @cached_property
    def encoder(self) -> Any:
        return load_cross_encoder(str(self.model), self.device, self.max_length)

    def relevance(self, question: str, texts: list[str]) -> np.ndarray:
        """sigmoid(logit) of each (question, text) pair, in [0, 1]."""
        if not texts:
            return np.zeros(0)
        import torch

        logits = self.encoder.predict([(question, t) for t in texts],
                                      batch_size=self.batch_size, show_progress_bar=False,
                                      activation_fn=torch.nn.Identity(),
                                      convert_to_numpy=True)
        logits = np.asarray(logits, dtype=np.float64).reshape(len(texts), -1)[:, -1]
        return 1.0 / (1.0 + np.exp(-logits))

    def search(self, query: str, k: int | None = None, as_of: datetime | None = None, *,
               probe: Probe | None = None) -> list[Hit]:
        limit, hits = self.candidates_for(query, k, as_of, probe, self.top_n)
        head = self.relevance(query, [h.unit.text for h in hits[: self.top_n]])
        tail = [1.0 / (1 + i) for i in range(len(head), len(hits))]
        scores = np.concatenate([1.0 + head, np.asarray(tail, dtype=np.float64)])
        picked = select_top(scores, np.arange(len(hits)), limit, self.threshold)
        values = scores.tolist()
        return [Hit(hits[i].unit, values[i]) for i in picked.tolist()]
