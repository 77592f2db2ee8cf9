"""The embedded default: Qwen2.5-Coder-0.5B through llama.cpp, for real."""

from __future__ import annotations

import os
import time
from typing import Any

import pytest

from memlab.llm import build_llm
from memlab.llm.chatml import count_chat_tokens
from memlab.llm.llamacpp import LlamaCppLLM
from memlab.llm.models import EMBEDDED_QWEN

MEMORY = "\n".join(
    f"- On day {i}, Caroline told Melanie she had finished chapter {i} of her novel."
    for i in range(1, 13))


def system(memory: str = MEMORY) -> dict[str, str]:
    return {"role": "system", "content": f"Answer from these notes.\nNotes:\n{memory}"}


@pytest.fixture(scope="session")
def qwen() -> LlamaCppLLM:
    """The embedded model, loaded once per session (shared with test_llm_cache)."""
    llm = LlamaCppLLM(max_tokens=24)
    llm.llama()
    return llm


def own_tokens(llm: LlamaCppLLM, messages: list[dict[str, str]]) -> list[int]:
    """The prompt as the model's own chat template and tokenizer make it, independently."""
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter

    llama: Any = llm.llama()[0]
    formatter = Jinja2ChatFormatter(
        template=llama.metadata["tokenizer.chat_template"],
        eos_token=llama._model.token_get_text(llama.token_eos()),
        bos_token=llama._model.token_get_text(llama.token_bos()))
    prompt = formatter(messages=messages).prompt
    return llama.tokenize(prompt.encode(), add_bos=False, special=True)


@pytest.mark.slow
def test_generates_with_exact_token_counts_and_digest(qwen: LlamaCppLLM) -> None:
    chat = [system(), {"role": "user", "content": "Which chapter did Caroline finish on day 7?"}]
    c = qwen.generate(chat)
    assert c.ok and c.text.strip()
    assert "7" in c.text
    assert c.digest == "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32"
    assert c.model == EMBEDDED_QWEN.name
    own = own_tokens(qwen, chat)
    assert c.prompt_tokens == len(own) == c.metadata["qwen_prompt_tokens"]
    assert c.prompt_tokens == count_chat_tokens(chat)
    assert 0 < c.completion_tokens <= 24
    assert c.metadata["n_ctx"] == 8192 and c.metadata["finish_reason"] in {"stop", "length"}


@pytest.mark.slow
def test_default_system_prompt_and_multi_turn_counts_match(qwen: LlamaCppLLM) -> None:
    chat = [{"role": "user", "content": "Hi, I'm Dana."},
            {"role": "assistant", "content": "Hello Dana!"},
            {"role": "user", "content": "What is my name? One word."}]
    c = qwen.generate(chat, max_tokens=6)
    # no system message: Qwen2.5's template inserts its default one, and so does memlab's count
    assert c.prompt_tokens == len(own_tokens(qwen, chat)) == c.metadata["qwen_prompt_tokens"]
    assert c.completion_tokens <= 6 and "Dana" in c.text


@pytest.mark.slow
def test_shared_prefix_is_reused_and_model_stays_loaded(qwen: LlamaCppLLM) -> None:
    first = qwen.generate([system(), {"role": "user", "content": "What happened on day 3?"}],
                          max_tokens=4)
    second = qwen.generate([system(), {"role": "user", "content": "What happened on day 9?"}],
                           max_tokens=4)
    assert first.prompt_tokens == second.prompt_tokens > 250
    # only the question after the shared notes is evaluated again
    assert second.metadata["prompt_eval_tokens"] < 20
    again = LlamaCppLLM(max_tokens=24)  # a new backend object reuses the loaded model
    assert again.llama()[0] is qwen.llama()[0]
    repeat = again.generate([system(), {"role": "user", "content": "What happened on day 3?"}],
                            max_tokens=4)
    assert repeat.text == first.text  # temperature 0, fixed seed: deterministic


@pytest.mark.slow
def test_timeout_and_overflow_are_recorded_errors(qwen: LlamaCppLLM) -> None:
    timed_out = LlamaCppLLM(max_tokens=24, timeout=0.0).generate(
        [{"role": "user", "content": "Count to fifty."}])
    assert not timed_out.ok and "timed out after 0 s" in timed_out.error
    assert timed_out.text == ""
    huge = LlamaCppLLM(max_tokens=24, n_ctx=512, n_threads=qwen.n_threads).generate(
        [system(MEMORY * 3), {"role": "user", "content": "?"}])
    assert not huge.ok and "exceed context window of 512" in huge.error
    assert huge.digest == EMBEDDED_QWEN.sha256


def test_missing_user_model_is_a_recorded_error(tmp_path: Any) -> None:
    c = build_llm({"name": "llamacpp", "params": {"model_path": str(tmp_path / "x.gguf")}}
                  ).generate([{"role": "user", "content": "hi"}])
    assert not c.ok and "model file not found" in c.error and "x.gguf" in c.error


@pytest.mark.slow
def test_bench_reports_cold_and_warm_prefix_speeds(
    qwen: LlamaCppLLM, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    from memlab.bench.__main__ import main

    assert main(["llm", "--repeats", "1", "--prompt-tokens", "120", "--max-tokens", "4",
                 "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    cold, warm = result["scenarios"]["cold"], result["scenarios"]["warm prefix"]
    assert result["cpu_count"] >= 1  # the threads each call used, as many as were free
    assert result["threads"] and all(1 <= t <= result["cpu_count"] for t in result["threads"])
    assert result["digest"] == EMBEDDED_QWEN.sha256
    assert cold["prompt_tokens"] == warm["prompt_tokens"] > 120
    assert warm["evaluated"] < 30 < cold["evaluated"]
    assert cold["prompt_tok_s"] > 0 and cold["gen_tok_s"] > 0


def test_bench_rejects_bad_options() -> None:
    from memlab.bench import llm as bench

    with pytest.raises(SystemExit) as info:
        bench.main(["--repeats", "0"])
    assert info.value.code == 2


def test_free_cores_leave_a_busy_core_to_its_process() -> None:
    """n_threads 0: each call takes the cores the others leave free (clock: wall, machine
    busy, own CPU seconds)."""
    from memlab.llm.llamacpp import FreeCores

    ticks = iter([(0.0, 0.0, 0.0),    # the model built: the first window starts
                  (2.0, 2.0, 1.0),    # one core busy besides our own work: 3 of 4
                  (2.1, 2.2, 1.1),    # a window under 0.5 s: the last decision stands
                  (4.0, 3.7, 2.9),    # all our own: every core again
                  (6.0, 5.9, 3.5),    # others 0.8 cores: one left to them
                  (8.0, 8.6, 3.6),    # others 1.3: two
                  (10.0, 13.4, 3.7)])  # others 2.35: one thread at least
    free = FreeCores(clock=lambda: next(ticks))
    free.start()
    assert [free(4) for _ in range(6)] == [3, 3, 4, 3, 2, 1]
    assert FreeCores(clock=lambda: None)(4) == 4  # nothing to read: every core
    first = iter([(0.0, 0.0, 0.0), (0.5, 0.5, 0.0)])  # no window yet: waits for one
    assert FreeCores(clock=lambda: next(first), min_window=0.01)(2) == 1


def test_free_cores_see_a_real_busy_process() -> None:
    import subprocess
    import sys

    from memlab.llm.llamacpp import FreeCores

    cores = os.cpu_count() or 1
    spin = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        free = FreeCores()
        free.start()
        time.sleep(1.0)  # a window with the spinning process in it
        assert free(cores) <= max(1, cores - 1)
    finally:
        spin.kill()
        spin.wait()


# What runs in a child process to see how it ends: the real model, then its log callback
# dropped as the interpreter's teardown may drop it before the last garbage collection.
_AFTER_EXIT = """
import gc, sys
import llama_cpp._logger as logger
from memlab.llm import llamacpp
from memlab.llm.llamacpp import LlamaCppLLM, close_at_exit

gc.disable()  # (so only close_at_exit collects)
llm = LlamaCppLLM(max_tokens=4)
llm.generate([{"role": "user", "content": "Hi"}])
llamacpp._LOADED.popitem()  # as an eviction drops it: only its own cycles hold it now
llm.generate([{"role": "user", "content": "Hi"}])  # loaded again, still cached
close_at_exit()  # (atexit runs it too)
del logger.llama_log_callback  # its thunk is freed: llama.cpp must not log through it
gc.collect()
print("freed before the callback", flush=True)
"""

_DAEMON_AT_EXIT = """
import threading, time
from memlab.llm.llamacpp import LlamaCppLLM

llm = LlamaCppLLM(max_tokens=4000, timeout=600)
started = threading.Event()
def talk():
    llm.generate([{"role": "user", "content": "Count from 1 to 5000, one per line."}],
                 on_token=lambda text: started.set())
threading.Thread(target=talk, daemon=True).start()
started.wait(120)
print("exiting mid-generation", flush=True)
"""


def _child(code: str) -> tuple[int, str, str, float]:
    import subprocess
    import sys

    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=300)
    return done.returncode, done.stdout, done.stderr, time.perf_counter() - start


@pytest.mark.slow
def test_models_are_freed_at_exit_before_llama_cpp_log_callback_goes() -> None:
    """Freeing a llama.cpp context logs through llama-cpp-python's callback; a model left
    to the interpreter's last garbage collection could call it after it was freed (CI saw
    a segmentation fault after every test had passed). close_at_exit frees every model,
    cached or only held by its cycles, while the callback is there."""
    code, out, err, _ = _child(_AFTER_EXIT)
    assert code == 0, err
    assert "freed before the callback" in out
    assert "Exception ignored" not in err and "Traceback" not in err, err


@pytest.mark.slow
def test_a_process_ending_mid_generation_stops_it_and_exits_cleanly() -> None:
    code, out, err, seconds = _child(_DAEMON_AT_EXIT)
    assert code == 0, err
    assert "exiting mid-generation" in out and "Traceback" not in err, err
    assert seconds < 120  # not the 4,000 tokens (minutes): stopped at the next token


def test_close_at_exit_waits_for_a_running_call_then_keeps_its_model_locked(
        monkeypatch: pytest.MonkeyPatch) -> None:
    import threading
    from collections import OrderedDict

    from memlab.llm import llamacpp

    class Model:
        closed = False

        def close(self) -> None:
            self.closed = True

    idle, busy = Model(), Model()
    locks = {"idle": threading.Lock(), "busy": threading.Lock()}
    monkeypatch.setattr(llamacpp, "_LOADED", OrderedDict(idle=idle, busy=busy))
    monkeypatch.setattr(llamacpp, "_LOCKS", dict(locks))
    monkeypatch.setattr(llamacpp, "_EXITING", threading.Event())
    monkeypatch.setattr(llamacpp, "_log_in_c", lambda: None)  # (the session's models log on)
    locks["busy"].acquire()  # a call that does not stop within the wait
    llamacpp.close_at_exit(wait=0.2)
    assert idle.closed and not busy.closed  # a model in use is never freed under its call
    assert not locks["idle"].acquire(blocking=False)  # no call starts on a closed model
    assert llamacpp._EXITING.is_set() and not llamacpp._LOADED
