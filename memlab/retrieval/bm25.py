"""BM25 keyword retrieval with the maintained ``bm25s`` library.

Tokenisation is bm25s's own ``Tokenizer``: lower-cased words of two or more letters,
its English stopword list (``"en"``), and the Snowball (Porter2) English stemmer from
``nltk`` — the same algorithm as PyStemmer's ``english``, which is not installed here,
and needs no downloaded data. ``stemmer: null`` turns stemming off.

Scores are raw BM25 (Lucene variant by default): >= 0 and unbounded, growing with the
number and rarity of shared terms, so a ``threshold`` is on that raw scale. A unit that
shares no term with the query scores 0 and is never returned.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from functools import lru_cache
from typing import Any, ClassVar

import numpy as np

from memlab.chunkers.base import MemoryUnit
from memlab.errors import ConfigError
from memlab.retrieval.ranking import DEFAULT_K
from memlab.retrieval.scored import ScoredStrategy
from memlab.spec import Component

_PROGRESS_FROM = 50_000  # bm25s progress bars only for big corpora


class Bm25Strategy(ScoredStrategy, Component):
    """BM25 (bm25s) over unit texts; English stopwords and Snowball stemming."""

    bounds: ClassVar[Mapping[str, Mapping[str, Any]]] = {"k1": {"low": 0},
                                                         "b": {"low": 0, "high": 1}}

    def __init__(
        self,
        k: int | None = DEFAULT_K,
        threshold: float | None = None,
        k1: float = 1.5,
        b: float = 0.75,
        method: str = "lucene",
        stopwords: str | None = "en",
        stemmer: str | None = "snowball",
    ) -> None:
        self.k = k
        self.threshold = threshold
        self.k1 = k1
        self.b = b
        self.method = method
        self.stopwords = stopwords
        self.stemmer = stemmer
        self._engine: Any = None
        self._tokenizer: Any = None

    def check_params(self) -> None:
        """Raise a ConfigError for k1 or b out of range or an unknown stemmer (config
        validation runs it)."""
        self.check_bounds("bm25")
        _stemmer(self.stemmer)

    def _added(
        self,
        units: Sequence[MemoryUnit],
        rows: np.ndarray,
        changed: np.ndarray,
        vectors: np.ndarray | None,
    ) -> None:
        if not self.table.fresh:
            self._engine = None  # bm25s indexes are immutable: rebuild on the next search

    def _prepare(self) -> None:
        if self._engine is not None or not len(self.table):
            return
        self.check_params()
        import bm25s

        texts = [u.text for u in self.table.sorted_units]
        big = len(texts) >= _PROGRESS_FROM
        self._tokenizer = bm25s.tokenization.Tokenizer(
            stopwords=self.stopwords or None, stemmer=_stemmer(self.stemmer)
        )
        ids = self._tokenizer.tokenize(texts, update_vocab=True, return_as="ids",
                                       show_progress=big)
        engine = bm25s.BM25(k1=self.k1, b=self.b, method=self.method)
        engine.index((ids, self._tokenizer.get_vocab_dict()), show_progress=big)
        self._engine = engine

    def _scores(self, query: str, visible: int) -> np.ndarray:
        # "stream": the same ids as return_as="ids", without a (disabled) tqdm per query
        ids = next(self._tokenizer.tokenize([query], update_vocab=False, return_as="stream",
                                            allow_empty=False))
        if not ids:
            return np.zeros(visible, dtype=np.float32)
        return np.asarray(self._engine.get_scores_from_ids(ids)[:visible], dtype=np.float32)

    def _mask(self, scores: np.ndarray) -> np.ndarray:
        return scores > 0


def _stemmer(name: str | None) -> Callable[[str], str] | None:
    if name is None:
        return None
    if name != "snowball":
        raise ConfigError(f"bm25 stemmer {name!r} is not known; valid choices: 'snowball', null")
    return _snowball_stem


@lru_cache(maxsize=1 << 18)
def _snowball_stem(word: str) -> str:
    """nltk's English Snowball stem of ``word``, memoised for the process: every
    conversation's (and every sweep variant's) tokenizer stems the same words again."""
    return _snowball().stem(word)


@lru_cache(maxsize=1)
def _snowball() -> Any:
    from nltk.stem.snowball import SnowballStemmer

    return SnowballStemmer("english")
