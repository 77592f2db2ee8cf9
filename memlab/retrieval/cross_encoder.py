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

``passage: sentences`` shows the model, for a unit longer than ``max_words`` words, only
its sentences closest to the question under ``embedder`` (MiniLM by default), in text
order, about ``max_words`` words, each run of them after its speaker (``user: s1 ... s4``):
a model that reads 128 word pieces then sees the part of a long turn that matters.

``fuse`` says how the model's order meets the base's: ``replace`` (above) keeps only the
model's; ``rrf`` scores each of the ``top_n`` units ``1 / (rrf_k + base rank) + weight /
(rrf_k + model rank)`` (ranks from 1); ``session_rrf`` does the same for *sessions* — a
session's base rank is that of its first unit, its model rank that of its best-scored
unit — and lists units session by session (fused score, then base order), so a session
with one strong unit and a session the base already liked both stay in front. Fused
scores are added to 1, above the rest of the base ranking.

``python -m memlab.eval train-reranker CONFIG`` trains such a model (MiniLM, one logit)
on the part of a probe split the case does not score and writes it where ``model`` points
(:mod:`memlab.eval.train_reranker`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from functools import cached_property, lru_cache
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from memlab.chunkers.base import MemoryUnit
from memlab.compute import cpu_turn
from memlab.data.schema import Probe
from memlab.embed.base import Embedder, EmbedderSpec, build_embedder
from memlab.embed.cache import maybe_cached
from memlab.errors import ConfigError
from memlab.retrieval.base import Hit
from memlab.retrieval.ranking import select_top
from memlab.retrieval.sentences import _SPEAKER, sentences
from memlab.retrieval.wrap import CANDIDATES, RRF_K, BaseSpec, Wrapper
from memlab.spec import Component

#: The usual public model, for users with network access.
DEFAULT_MODEL = "cross-encoder/ms-marco-MiniLM-L6-v2"
#: What the model reads of a unit, and how its order meets the base's.
PASSAGES = ("text", "sentences")
FUSIONS = ("replace", "rrf", "session_rrf")


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

    nested: ClassVar[Mapping[str, str]] = {"base": "retrieval", "embedder": "embedder"}
    bounds: ClassVar[Mapping[str, Mapping[str, Any]]] = {
        "top_n": CANDIDATES, "batch_size": {"low": 1, "integer": True},
        "max_length": {"low": 1, "integer": True}, "max_words": {"low": 1, "integer": True},
        "weight": {"low": 0}, "rrf_k": RRF_K}

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
        passage: str = "text",
        max_words: int = 90,
        embedder: EmbedderSpec = "sentence-transformers",
        fuse: str = "replace",
        weight: float = 1.0,
        rrf_k: int = 60,
    ) -> None:
        self.k = k
        self.threshold = threshold
        self.base = base
        self.top_n = top_n
        self.model = model
        self.device = device
        self.batch_size = batch_size
        self.max_length = max_length
        self.passage = passage
        self.max_words = max_words
        self.embedder = embedder
        self.fuse = fuse
        self.weight = weight
        self.rrf_k = rrf_k

    def check_params(self) -> None:
        self.check_bounds("cross_encoder")
        for name, value, allowed in (("passage", self.passage, PASSAGES),
                                     ("fuse", self.fuse, FUSIONS)):
            if value not in allowed:
                raise ConfigError(f"cross_encoder: {name} must be one of "
                                  f"{', '.join(allowed)}, got {value!r}")

    def index(self, units: Sequence[MemoryUnit], vectors: np.ndarray | None = None) -> None:
        """Load the model first: a model that cannot load fails before any indexing (not
        in ``check_params``, which config validation runs before a model may exist)."""
        self.check_params()
        self.encoder  # noqa: B018
        super().index(units, vectors)

    @cached_property
    def sentence_encoder(self) -> Embedder:
        return maybe_cached(build_embedder(self.embedder), True)

    def passages(self, question: str, texts: list[str]) -> list[str]:
        """What the model reads of each text (``passage``)."""
        if self.passage == "text":
            return texts
        return [best_sentences(t, question, self.sentence_encoder, self.max_words)
                for t in texts]

    @cached_property
    def encoder(self) -> Any:
        return load_cross_encoder(str(self.model), self.device, self.max_length)

    def relevance(self, question: str, texts: list[str]) -> np.ndarray:
        """sigmoid(logit) of each (question, text) pair, in [0, 1]."""
        if not texts:
            return np.zeros(0)
        import torch

        with cpu_turn():  # (memlab.compute)
            logits = self.encoder.predict([(question, t) for t in texts],
                                          batch_size=self.batch_size, show_progress_bar=False,
                                          activation_fn=torch.nn.Identity(),
                                          convert_to_numpy=True)
        logits = np.asarray(logits, dtype=np.float64).reshape(len(texts), -1)[:, -1]
        return 1.0 / (1.0 + np.exp(-logits))

    def search(self, query: str, k: int | None = None, as_of: datetime | None = None, *,
               probe: Probe | None = None) -> list[Hit]:
        limit, hits = self.candidates_for(query, k, as_of, probe, self.top_n)
        head_hits = hits[: self.top_n]
        head = self.relevance(query, self.passages(query, [h.unit.text for h in head_hits]))
        if self.fuse == "rrf":
            head = rrf_fuse(head, self.weight, self.rrf_k)
        elif self.fuse == "session_rrf":
            order, head = session_fuse([h.unit.session_id for h in head_hits], head,
                                       self.weight, self.rrf_k)
            hits = [head_hits[i] for i in order] + hits[len(head_hits):]
        tail = [1.0 / (1 + i) for i in range(len(head), len(hits))]
        scores = np.concatenate([1.0 + head, np.asarray(tail, dtype=np.float64)])
        picked = select_top(scores, np.arange(len(hits)), limit, self.threshold)
        values = scores.tolist()
        return [Hit(hits[i].unit, values[i]) for i in picked.tolist()]


@lru_cache(maxsize=4)
def _sentence_encoder(spec: str) -> Embedder:
    return maybe_cached(build_embedder(json.loads(spec)), True)


def passages_for(params: Mapping[str, Any], question: str, texts: list[str]) -> list[str]:
    """What a cross-encoder with these parameters (``passage``, ``max_words``,
    ``embedder``) reads of each text; ``train-reranker`` shows its model the same."""
    if params["passage"] == "text":
        return list(texts)
    encoder = _sentence_encoder(json.dumps(params["embedder"], sort_keys=True, default=str))
    return [best_sentences(t, question, encoder, int(params["max_words"])) for t in texts]


def _ranks(scores: np.ndarray) -> np.ndarray:
    """1-based rank of each score, best first; ties keep index order."""
    ranks = np.empty(len(scores), dtype=np.float64)
    ranks[np.argsort(-scores, kind="stable")] = np.arange(1, len(scores) + 1)
    return ranks


def rrf_fuse(relevance: np.ndarray, weight: float, rrf_k: int) -> np.ndarray:
    """Each unit's ``1 / (rrf_k + base rank) + weight / (rrf_k + model rank)``; the base
    rank is the unit's place in ``relevance`` (best first)."""
    base = np.arange(1, len(relevance) + 1, dtype=np.float64)
    return 1.0 / (rrf_k + base) + weight / (rrf_k + _ranks(relevance))


def session_fuse(sessions: list[str], relevance: np.ndarray, weight: float, rrf_k: int
                 ) -> tuple[list[int], np.ndarray]:
    """(unit order, score per unit in that order): sessions fused by rank — base rank by
    first unit, model rank by best unit — and their units listed together, in base order,
    each scored with its session's fused score (minus a hair per place inside it, so
    scores stay best-first)."""
    best: dict[str, float] = {}
    for session, value in zip(sessions, relevance.tolist(), strict=True):
        best[session] = max(best.get(session, -np.inf), value)
    names = list(best)  # first-unit (base) order
    fused = rrf_fuse(np.asarray([best[n] for n in names]), weight, rrf_k)
    place = {n: i for i, n in enumerate(names)}
    order = sorted(range(len(sessions)), key=lambda i: (-fused[place[sessions[i]]], i))
    scores = [fused[place[sessions[i]]] for i in order]
    step = 1e-9
    return order, np.asarray([s - step * j for j, s in enumerate(scores)])


def best_sentences(text: str, question: str, encoder: Embedder, max_words: int) -> str:
    """``text`` itself when it has at most ``max_words`` words; else its sentences closest
    to ``question`` under ``encoder`` (best first until ``max_words``; the first one even
    if longer), in text order, each run after its speaker: ``user: s1 ... s4``."""
    if len(text.split()) <= max_words:
        return text
    pieces: list[tuple[str, str]] = []  # (speaker prefix, sentence)
    for line in text.split("\n"):
        match = _SPEAKER.match(line)
        prefix = match.group(0) if match else ""
        pieces += [(prefix, piece) for piece in sentences(line)]
    vectors = encoder.encode([question] + [p for _, p in pieces])
    similarity = vectors[1:] @ vectors[0]
    chosen: list[int] = []
    words = 0
    for i in np.argsort(-similarity, kind="stable").tolist():
        size = len(pieces[i][1].split())
        if chosen and words + size > max_words:
            continue
        chosen.append(i)
        words += size
        if words >= max_words:
            break
    lines: list[str] = []
    last = None
    for i in sorted(chosen):
        prefix, piece = pieces[i]
        if prefix == last and lines:
            lines[-1] += " ... " + piece
        else:
            lines.append(prefix + piece)
            last = prefix
    return "\n".join(lines)
