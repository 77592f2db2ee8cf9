"""The process's CPU turns (memlab.compute): fair, reentrant, not jammed by a waiter that
gives up; and with the real models, an embedder's batches never run inside a llama.cpp
call of the same process (they did, and a 7.7 s call took 54.5 s: ``bench llm
--beside-encoder``)."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from memlab.compute import Turns


def test_a_turn_is_reentrant_and_exclusive() -> None:
    turns = Turns()
    inside: list[str] = []
    with turns.turn():
        with turns.turn():  # the same thread: at once
            inside.append("nested")
        got: list[float] = []

        def wait_for_it() -> None:
            with turns.turn():
                got.append(time.monotonic())

        other = threading.Thread(target=wait_for_it)
        other.start()
        time.sleep(0.2)
        assert got == []  # still ours, though the nested one was given back
        released = time.monotonic()
    other.join(5)
    assert inside == ["nested"] and got and got[0] >= released


def test_a_loop_of_short_turns_cannot_starve_a_waiting_call() -> None:
    """First come, first served: the looping thread queues behind the waiting one."""
    turns = Turns()
    stop = threading.Event()
    steps: list[int] = []

    def loop() -> None:
        while not stop.is_set():
            with turns.turn():
                steps.append(1)
                time.sleep(0.002)

    looping = threading.Thread(target=loop)
    looping.start()
    time.sleep(0.05)
    start = time.monotonic()
    with turns.turn():
        waited = time.monotonic() - start
        before = len(steps)
        time.sleep(0.05)
        assert len(steps) == before  # nothing ran beside it
    stop.set()
    looping.join(5)
    assert waited < 1.0  # one step's wait (2 ms) with room for a slow machine; not forever


def test_a_waiter_that_gives_up_does_not_jam_the_queue() -> None:
    turns = Turns()
    holder_in, holder_out = threading.Event(), threading.Event()

    def hold() -> None:
        with turns.turn():
            holder_in.set()
            holder_out.wait(5)

    holding = threading.Thread(target=hold)
    holding.start()
    holder_in.wait(5)
    # a waiter interrupted inside wait() (here: its condition's wait raises once)
    real_wait = turns._changed.wait
    calls = {"n": 0}

    def interrupted(timeout: float | None = None) -> bool:
        calls["n"] += 1
        raise KeyboardInterrupt

    turns._changed.wait = interrupted  # type: ignore[method-assign]
    with pytest.raises(KeyboardInterrupt), turns.turn():
        pass
    turns._changed.wait = real_wait  # type: ignore[method-assign]
    assert calls["n"] == 1 and not turns._waiting
    holder_out.set()
    holding.join(5)
    done: list[bool] = []

    def take() -> None:
        with turns.turn():
            done.append(True)

    later = threading.Thread(target=take)
    later.start()
    later.join(5)
    assert done == [True]


@pytest.mark.slow
def test_an_embedder_s_batches_wait_while_the_model_answers_in_the_same_process() -> None:
    """The agent's case: a background import encodes while a chat is answered. Every
    encoder batch runs outside the answer's decoding (first to last token)."""
    from memlab.embed import build_embedder
    from memlab.llm.llamacpp import LlamaCppLLM

    llm = LlamaCppLLM(max_tokens=48)
    messages = [{"role": "user", "content": "Write three sentences about the sea."}]
    llm.generate(messages)  # loaded
    embedder: Any = build_embedder({"name": "sentence-transformers"})
    texts = [f"Note {i}: my sister Lena lives in Porto and plays the cello." for i in range(64)]
    embedder.encode(texts)
    session = embedder.onnx().session
    batches: list[tuple[float, float]] = []

    class Timed:  # the ONNX session, each run's interval recorded
        def run(self, *args: Any) -> Any:
            start = time.monotonic()
            out = session.run(*args)
            batches.append((start, time.monotonic()))
            return out

    embedder.onnx().session = Timed()
    stop = threading.Event()

    def encode() -> None:
        while not stop.is_set():
            embedder.encode([f"{t} ({len(batches)})" for t in texts])  # new texts each time

    tokens: list[float] = []
    encoding = threading.Thread(target=encode)
    encoding.start()
    try:
        time.sleep(0.5)
        reply = llm.generate(messages, seed=7, on_token=lambda _: tokens.append(
            time.monotonic()))
    finally:
        stop.set()
        encoding.join(60)
        embedder.onnx().session = session
    assert reply.text and len(tokens) > 5 and len(batches) > 1
    first, last = tokens[0], tokens[-1]
    assert [b for b in batches if b[0] < last and b[1] > first] == []
    assert any(b[1] <= first for b in batches) and any(b[0] >= last for b in batches)


@pytest.mark.slow
def test_bench_llm_measures_the_model_beside_an_encoder_thread() -> None:
    from memlab.bench.llm import render, run

    result = run(n_ctx=2048, threads=0, repeats=1, prompt_tokens=100, max_tokens=8,
                 model_path="", beside_encoder=True)
    assert result["beside_encoder"] and result["cpu_turns"] and result["encoder_batches"] > 0
    assert all(s["gen_tokens"] > 0 for s in result["scenarios"].values())
    assert "beside an encoder thread" in render(result).splitlines()[0]


def test_a_background_thread_waits_behind_every_other_waiting_thread() -> None:
    """An import (background) asked first, a chat asked later: the chat goes first."""
    from memlab.compute import background

    turns = Turns()
    order: list[str] = []

    def step(name: str, in_background: bool, delay: float) -> None:
        time.sleep(delay)
        if in_background:
            with background(), turns.turn():
                order.append(name)
        else:
            with turns.turn():
                order.append(name)

    with turns.turn():
        threads = [threading.Thread(target=step, args=("import", True, 0.0)),
                   threading.Thread(target=step, args=("chat", False, 0.1)),
                   threading.Thread(target=step, args=("search", False, 0.2))]
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + 10
        while len(turns._waiting) < 3 and time.monotonic() < deadline:
            time.sleep(0.01)  # until all three wait
    for thread in threads:
        thread.join(5)
    assert order == ["chat", "search", "import"]


def test_the_agent_s_search_and_answer_are_one_turn_with_an_in_process_model(
        tmp_path: Any) -> None:
    """Else a background import's step slips in between them and a chat waits twice
    (measured: 41 s instead of 18-26 s beside an import of 1,500 messages)."""
    from fastapi.testclient import TestClient

    from memlab.agent import load_settings
    from memlab.compute import TURNS
    from memlab.llm.mock import MockLLM
    from memlab.serve import build_app

    held: list[bool] = []

    class Recording(MockLLM):
        def generate(self, messages: Any, **overrides: Any) -> Any:
            held.append(TURNS._owner == threading.get_ident() and TURNS._depth >= 1)
            return super().generate(messages, **overrides)

    for backend, want in (("llamacpp", True), ("ollama", False)):
        settings = load_settings(env={}, overrides={
            "model.embedding_model": "hash", "model.type": backend,
            "memory.data_dir": str(tmp_path / backend)})
        client = TestClient(build_app(settings, llm=Recording(["Noted."])))
        held.clear()
        reply = client.post("/chat", json={"message": "My cat is Miso", "user_id": "ana"})
        assert reply.status_code == 200, reply.text
        assert held == [want], backend
