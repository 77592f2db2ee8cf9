"""Ollama embedding models by name, through the ``ollama`` package's ``/api/embed``.

The host is the ``host`` parameter, else ``$OLLAMA_HOST``, else Ollama's default
``http://127.0.0.1:11434``. The model id carries the model's digest from ``/api/tags``,
so re-pulling a changed model never reuses cached vectors.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any, TypeVar

import numpy as np

from memlab.embed.base import normalize_rows
from memlab.errors import MemlabError, check_number
from memlab.spec import Component

DEFAULT_HOST = "http://127.0.0.1:11434"
T = TypeVar("T")


class OllamaEmbedder(Component):
    """An Ollama embedding model (e.g. ``nomic-embed-text``, ``mxbai-embed-large``)."""

    def __init__(
        self,
        model: str = "nomic-embed-text",
        host: str | None = None,
        batch_size: int = 64,
        truncate: bool = True,
        timeout: float = 120.0,
    ) -> None:
        self.model = model
        self.host = host
        self.batch_size = batch_size
        self.truncate = truncate
        self.timeout = timeout
        self._client: Any = None
        self._model_id: str | None = None

    def check_params(self) -> None:
        """Raise a ConfigError for a batch size below 1 or a timeout not above 0 (config
        validation runs it)."""
        check_number("embedder 'ollama': batch_size", self.batch_size, low=1, integer=True)
        check_number("embedder 'ollama': timeout", self.timeout, low=0, low_open=True)

    @property
    def resolved_host(self) -> str:
        return self.host or os.environ.get("OLLAMA_HOST") or DEFAULT_HOST

    @property
    def model_id(self) -> str:
        """``ollama:<model>@<digest>`` (digest from the server's model list)."""
        if self._model_id is None:
            listing = self._call(lambda: self.client().list())
            digest = "unknown"
            for entry in listing.models:
                if _same_model(entry.model or "", self.model):
                    digest = (entry.digest or "unknown")[:16]
            self._model_id = f"ollama:{self.model}@{digest}"
        return self._model_id

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        self.check_params()
        rows: list[Sequence[float]] = []
        for start in range(0, len(texts), self.batch_size):
            batch = list(texts[start : start + self.batch_size])
            response = self._call(partial(self._embed, batch))
            if len(response.embeddings) != len(batch):
                raise MemlabError(
                    f"Ollama at {self.resolved_host} returned {len(response.embeddings)} "
                    f"embeddings for {len(batch)} texts (model {self.model!r})"
                )
            rows.extend(response.embeddings)
        if not rows:
            return np.zeros((0, 0), dtype=np.float32)
        return normalize_rows(np.asarray(rows, dtype=np.float32))

    def _embed(self, batch: list[str]) -> Any:
        return self.client().embed(model=self.model, input=batch, truncate=self.truncate)

    def client(self) -> Any:
        if self._client is None:
            import ollama

            self._client = ollama.Client(host=self.resolved_host, timeout=self.timeout)
        return self._client

    def _call(self, action: Callable[[], T]) -> T:
        """Run one request, turning transport and server errors into clear memlab errors."""
        import httpx
        import ollama

        where = f"Ollama at {self.resolved_host}"
        try:
            return action()
        except ollama.ResponseError as exc:
            hint = f" (try `ollama pull {self.model}`)" if exc.status_code == 404 else ""
            raise MemlabError(f"{where}: model {self.model!r}: {exc.error}{hint}") from None
        except (ConnectionError, httpx.HTTPError) as exc:
            raise MemlabError(
                f"{where} is unreachable ({type(exc).__name__}: {exc}); start it with "
                "`ollama serve` or point OLLAMA_HOST / the 'host' parameter at a running server"
            ) from None


def _same_model(listed: str, wanted: str) -> bool:
    """Ollama names ``nomic-embed-text`` and ``nomic-embed-text:latest`` alike."""

    def canon(name: str) -> str:
        return name if ":" in name else f"{name}:latest"

    return canon(listed) == canon(wanted)
