"""ChatML rendering, offline Qwen counts, thinking separation, retries, registry specs."""

from __future__ import annotations

import pytest

from memlab.errors import ConfigError, UnknownComponentError
from memlab.llm import build_llm, registry
from memlab.llm.chatml import (
    QWEN25_DEFAULT_SYSTEM,
    count_chat_tokens,
    default_system_for,
    render_chatml,
    split_thinking,
    tokenizer_for,
)
from memlab.llm.common import check_messages, resolve_generation
from memlab.llm.mock import MockLLM
from memlab.llm.retry import PermanentError, TransientError, with_retries
from memlab.tokens import encode

FRANCE = [{"role": "system", "content": "You answer briefly."},
          {"role": "user", "content": "What is the capital of France?"}]


def test_render_matches_qwen_chat_template() -> None:
    assert render_chatml(FRANCE) == (
        "<|im_start|>system\nYou answer briefly.<|im_end|>\n"
        "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n"
        "<|im_start|>assistant\n")
    no_system = render_chatml(FRANCE[1:], default_system=QWEN25_DEFAULT_SYSTEM)
    assert no_system.startswith(f"<|im_start|>system\n{QWEN25_DEFAULT_SYSTEM}<|im_end|>\n")
    # an explicit system message replaces the default, it is not added twice
    assert render_chatml(FRANCE, default_system=QWEN25_DEFAULT_SYSTEM) == render_chatml(FRANCE)


def test_counts_are_exact_qwen_tokens() -> None:
    # 24 is also what Qwen2.5-Coder's GGUF tokenizer gives (checked in test_llm_llamacpp)
    assert count_chat_tokens(FRANCE) == 24
    ids = encode(render_chatml(FRANCE))
    assert ids[0] == 151644 and ids[-3:] == [151644, 77091, 198]  # <|im_start|>assistant\n
    assert count_chat_tokens(FRANCE[1:], default_system=QWEN25_DEFAULT_SYSTEM) == 36


def test_model_names_map_to_tokenizer_and_default_system() -> None:
    assert tokenizer_for("qwen3:4b") == "qwen2.5"
    assert tokenizer_for("huihui_ai/qwen3-abliterated:4b-v2") == "qwen2.5"
    assert tokenizer_for("Qwen/Qwen3.6-27B") == "qwen3.6"
    assert tokenizer_for("llama3.2") == "qwen2.5"
    assert default_system_for("/models/qwen2.5-coder-0.5b-instruct-q4_k_m.gguf") == (
        QWEN25_DEFAULT_SYSTEM)
    assert default_system_for("qwen3:4b") == ""


@pytest.mark.parametrize(
    ("raw", "thinking", "answer"),
    [
        ("<think>\nCount the letters.\n</think>\n\nThree.", "Count the letters.", "Three."),
        ("<think>\n\n</think>\n\nParis.", "", "Paris."),
        ("Count first.\n</think>\n\nThree.", "Count first.", "Three."),  # <think> was in prompt
        ("<think>\nStill going when max_tokens hit", "Still going when max_tokens hit", ""),
        ("Plain answer.", "", "Plain answer."),
    ],
)
def test_split_thinking(raw: str, thinking: str, answer: str) -> None:
    assert split_thinking(raw) == (thinking, answer)


def test_bad_messages_and_overrides_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="message 1 must be a mapping"):
        check_messages([{"role": "user", "content": "hi"}, {"role": "user"}])  # type: ignore[list-item]
    with pytest.raises(ConfigError, match="empty list"):
        check_messages([])
    with pytest.raises(ConfigError, match="cannot override temprature"):
        resolve_generation("x", {"temperature": 0.0}, {"temprature": 1.0})


def test_retries_back_off_exponentially_and_only_for_transient_errors() -> None:
    waits: list[float] = []
    calls = iter([TransientError("down"), TransientError("down"), "ok"])

    def flaky() -> str:
        item = next(calls)
        if isinstance(item, Exception):
            raise item
        return item

    assert with_retries(flaky, retries=3, backoff=0.5, sleep=waits.append) == ("ok", None, 3)
    assert waits == [0.5, 1.0]

    def always_down() -> str:
        raise TransientError("down")

    result, error, attempts = with_retries(always_down, retries=2, backoff=0.1,
                                           sleep=waits.append)
    assert (result, str(error), attempts) == (None, "down", 3)

    def missing() -> str:
        raise PermanentError("no such model", status=404)

    result, error, attempts = with_retries(missing, retries=5, backoff=0.1, sleep=waits.append)
    assert attempts == 1 and error is not None and error.status == 404


def test_registry_lists_backends_lazily_and_builds_from_specs() -> None:
    assert registry.names() == ["llamacpp", "mock", "ollama", "openai"]
    llm = build_llm({"name": "mock", "params": {"responses": ["fine"]}})
    assert isinstance(llm, MockLLM)
    assert llm.generate([{"role": "user", "content": "how?"}]).text == "fine"
    params = {p.name: p.default for p in registry.params("llamacpp")}
    assert params["n_ctx"] == 8192 and params["temperature"] == 0.0 and params["seed"] == 0
    assert {p.name: p.default for p in registry.params("ollama")}["model"] == "qwen3:4b"
    with pytest.raises(UnknownComponentError, match="Did you mean 'ollama'"):
        build_llm({"name": "olama"})
    with pytest.raises(ConfigError, match="num_ctxx: not a parameter of llm 'ollama'"):
        build_llm({"name": "ollama", "params": {"num_ctxx": 4096}})
    with pytest.raises(ConfigError, match="unknown key"):
        build_llm({"name": "ollama", "parms": {}})
    assert type(build_llm()).__name__ == "LlamaCppLLM"  # the embedded default, not loaded yet
