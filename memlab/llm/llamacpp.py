"""The embedded default backend: a GGUF run in-process by llama-cpp-python.

Loaded models are kept in a small process-wide cache keyed by file, context size, threads
and batch size, so building the backend again (one per run, per worker, per notebook cell)
does not reload 500 MB. The Llama state is never reset between calls: llama.cpp keeps the
previous prompt in its KV cache and evaluates only the part after the longest shared
prefix, which makes a stable system prompt + memory block nearly free the second time.

llama.cpp builds that use Intel AMX segfault in ``ggml_backend_amx_mul_mat`` on the first
batched decode of a Q4_K_M model (ggml-org/llama.cpp#20824; seen on this project's own
machines). When the installed build reports ``AMX_INT8 = 1``, memlab loads models without
llama.cpp's extra buffer types (AMX and weight repacking); set ``MEMLAB_LLAMA_AMX=1`` to
keep them once a fixed build is installed.

llama.cpp's threads wait for each other at every step, so one that shares its core with
another busy process slows them all: on 2 cores beside a busy process, 2 threads generated
3.3 tokens/s and 1 thread 14.2. With ``n_threads`` 0 (the default) each call therefore
uses the cores the other processes leave free, measured from their CPU time since the
previous call (:class:`FreeCores`).
"""

from __future__ import annotations

import atexit
import codecs
import ctypes
import gc
import math
import os
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Any, cast

from memlab.compute import cpu_turn
from memlab.errors import ConfigError, MemlabError
from memlab.llm.base import Completion, Message
from memlab.llm.chatml import QWEN25_DEFAULT_SYSTEM, split_thinking, tokenizer_for
from memlab.llm.common import (
    BackendBounds,
    check_messages,
    qwen_counts,
    resolve_generation,
)
from memlab.llm.models import ModelFileError, catalog_model, resolve_model_path
from memlab.llm.retry import LLMCallError, PermanentError, failed
from memlab.spec import Component

MAX_LOADED = 2
_LOADED: OrderedDict[tuple[str, int, int, int], Any] = OrderedDict()
_LOCKS: dict[tuple[str, int, int, int], threading.Lock] = {}
_REGISTRY_LOCK = threading.Lock()


def load_llama(path: Path, n_ctx: int, n_threads: int, n_batch: int) -> tuple[Any, threading.Lock]:
    """A loaded ``llama_cpp.Llama`` (shared per process) and the lock that serialises it."""
    key = (str(path.resolve()), n_ctx, n_threads, n_batch)
    with _REGISTRY_LOCK:
        if key in _LOADED:
            _LOADED.move_to_end(key)
            return _LOADED[key], _LOCKS[key]
        from llama_cpp import Llama

        with cpu_workarounds():
            llama = Llama(
                model_path=str(path), n_ctx=n_ctx, n_threads=n_threads,
                n_threads_batch=n_threads, n_batch=n_batch, seed=0, verbose=False,
            )
        _LOADED[key] = llama
        lock = _LOCKS[key] = threading.Lock()
        evicted = len(_LOADED) > MAX_LOADED
        while len(_LOADED) > MAX_LOADED:
            old, _ = _LOADED.popitem(last=False)
            _LOCKS.pop(old, None)
    if evicted:
        gc.collect()  # a Llama's objects form cycles: only the collector frees them
    return llama, lock


@lru_cache(maxsize=1)
def amx_build() -> bool:
    """Whether the installed llama.cpp was built with AMX kernels (see module docstring)."""
    import llama_cpp

    return b"AMX_INT8 = 1" in llama_cpp.llama_print_system_info()


def avoid_amx() -> bool:
    return amx_build() and os.environ.get("MEMLAB_LLAMA_AMX", "") != "1"


@contextmanager
def cpu_workarounds() -> Iterator[None]:
    """While active, new Llama models load without extra buffer types on AMX builds."""
    import llama_cpp.llama_cpp as capi

    if not avoid_amx():
        yield
        return
    original = capi.llama_model_default_params

    def without_extra_buffers() -> Any:
        params = original()
        params.use_extra_bufts = False
        return params

    capi.llama_model_default_params = without_extra_buffers
    try:
        yield
    finally:
        capi.llama_model_default_params = original


def unload_all() -> None:
    """Drop every cached model (its memory is freed once no running call holds it; the
    next call loads again)."""
    with _REGISTRY_LOCK:
        _LOADED.clear()
        _LOCKS.clear()
    gc.collect()  # a Llama's objects form cycles: only the collector frees them


#: Set when the process ends: a generation still running stops at its next token.
_EXITING = threading.Event()


@atexit.register
def close_at_exit(wait: float = 10.0) -> None:
    """Free every model while the interpreter is whole. A llama.cpp model left to the
    interpreter's teardown is freed in its last garbage collection (its objects form
    cycles), after llama-cpp-python's log callback may be gone; freeing a context logs
    through that callback, and the process can end in a segmentation fault. A call still
    running in another thread is stopped at its next token and waited for up to ``wait``
    seconds; its model's lock is kept, so no call starts on a closed model."""
    _EXITING.set()
    with _REGISTRY_LOCK:
        loaded = [(llama, _LOCKS[key]) for key, llama in _LOADED.items()]
        _LOADED.clear()
        _LOCKS.clear()
    deadline = time.monotonic() + wait
    for llama, lock in loaded:
        if lock.acquire(timeout=max(0.0, deadline - time.monotonic())):
            llama.close()
    del loaded
    gc.collect()  # models dropped earlier (evicted, unloaded) that only cycles still hold
    _log_in_c()


def _log_in_c() -> None:
    """From now on llama.cpp logs in C (to stderr), not through llama-cpp-python's
    callback: a model still held somewhere is freed safely in the interpreter's teardown."""
    if "llama_cpp" in sys.modules:
        capi = sys.modules["llama_cpp"]
        capi.llama_log_set(capi.llama_log_callback(), ctypes.c_void_p(0))  # (a NULL one)


class FreeCores:
    """The cores other processes leave free, from the CPU time the whole machine and this
    process used since the previous decision: ``cores`` minus the others' busy cores,
    rounded up from a quarter of a core, at least 1. Over a window shorter than
    ``min_window`` seconds (10 ms clock ticks make it noisy) the previous decision stands;
    the first decision waits for a window that long (building a LlamaCppLLM starts one,
    so it has usually passed). ``clock`` returns (wall, machine busy, this process's CPU)
    seconds, or None where it cannot be read (every core). Other threads of this process
    (an embedder beside the model) count as its own: they take turns with the model's
    calls instead (:mod:`memlab.compute`)."""

    def __init__(self, clock: Callable[[], tuple[float, float, float] | None] | None = None,
                 min_window: float = 0.5) -> None:
        self.clock = clock or _cpu_clock
        self.min_window = min_window
        self.last: tuple[float, float, float] | None = None
        self.decided: int | None = None
        self.lock = threading.Lock()

    def start(self) -> None:
        """Begin the first window now (an LLM is built), unless one is running."""
        with self.lock:
            if self.last is None:
                self.last = self.clock()

    def __call__(self, cores: int) -> int:
        with self.lock:
            now = self.clock()
            if now is None:
                return cores
            if self.last is None:
                self.last = now
            wall = now[0] - self.last[0]
            if wall < self.min_window and self.decided is None:  # once: wait for a window
                time.sleep(self.min_window - wall)
                now = self.clock() or now
            wall, busy, own = (a - b for a, b in zip(now, self.last, strict=True))
            if wall < self.min_window:
                return min(self.decided or cores, cores)
            self.last = now
            others = max(0.0, (busy - own) / wall)
            self.decided = max(1, cores - max(0, math.ceil(others - 0.25)))
            return self.decided


def _cpu_clock() -> tuple[float, float, float] | None:
    """(monotonic seconds, CPU seconds the machine spent busy, CPU seconds of this process).
    Busy leaves out niced work (it yields to ours) and guest time (counted in user too);
    steal counts: a hypervisor's other guests hold the cores as another process would."""
    try:
        import psutil
    except ImportError:
        return None
    times = psutil.cpu_times()
    idle = times.idle + getattr(times, "iowait", 0.0) + getattr(times, "nice", 0.0)
    guest = getattr(times, "guest", 0.0)  # (guest_nice is inside nice)
    own = os.times()
    return time.monotonic(), sum(times) - idle - guest, own.user + own.system


#: One measure per process: every loaded model's calls share the cores.
_FREE_CORES = FreeCores()


class _Deadline:
    """Logits processor that forces end-of-sequence once the time budget is spent."""

    def __init__(self, seconds: float, eos: int) -> None:
        self.deadline = time.perf_counter() + seconds
        self.eos = eos
        self.hit = False

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        if time.perf_counter() > self.deadline or _EXITING.is_set():
            self.hit = True
            scores[:] = float("-inf")
            scores[self.eos] = 0.0
        return scores


class _Tokens:
    """Logits processor that passes the text of each token generated so far to
    ``on_token`` as soon as it is sampled (llama.cpp calls it before sampling the next one,
    with every token so far; the last token is not seen here: the caller sends what the
    final text holds beyond what was passed). Bytes split between tokens (a multi-byte
    character) are held until they decode."""

    def __init__(self, llama: Any, on_token: Callable[[str], None]) -> None:
        self.llama = llama
        self.on_token = on_token
        self.seen: int | None = None
        self.sent = ""
        self.decoder = codecs.getincrementaldecoder("utf-8")("replace")

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        n = len(input_ids)
        if self.seen is not None and n > self.seen:
            self._send(self.decoder.decode(self.llama.detokenize(
                [int(t) for t in input_ids[self.seen:n]])))
        self.seen = n
        return scores

    def finish(self, raw: str) -> None:
        """Send what the finished text holds beyond what was sent (its last token)."""
        self._send(self.decoder.decode(b"", final=True))
        if raw.startswith(self.sent):
            self._send(raw[len(self.sent):])

    def _send(self, text: str) -> None:
        if text:
            self.sent += text
            self.on_token(text)


class LlamaCppLLM(BackendBounds, Component):
    """A GGUF model in-process via llama.cpp; the embedded Qwen2.5-Coder-0.5B by default.

    ``model`` names an embedded model of the catalog (``qwen2.5-coder-0.5b``, the default,
    or ``qwen2.5-coder-1.5b``), assembled and verified on first use; ``model_path``, a GGUF
    file, takes precedence over it.
    ``n_threads`` 0 means the cores other processes leave free, measured before each call
    (one per core on an idle machine). ``timeout`` bounds one call's wall time: when
    it passes, generation is stopped and the call is recorded as an error.
    """

    backend = "llamacpp"
    #: ``generate(..., on_token=callback)`` passes the text as it is generated
    streams_tokens = True
    # Left out of the cache key's params: the weights are identified by digest and name
    # (``model``, ``model_path``, ``model_name``); threads and timeout do not change the output.
    cache_exempt = frozenset({"model", "model_path", "model_name", "n_threads", "timeout"})

    def __init__(
        self,
        model: str = "",
        model_path: str = "",
        model_name: str = "",
        n_ctx: int = 8192,
        n_threads: int = 0,
        n_batch: int = 512,
        temperature: float = 0.0,
        top_p: float = 1.0,
        top_k: int = 40,
        min_p: float = 0.0,
        repeat_penalty: float = 1.0,
        seed: int = 0,
        max_tokens: int = 256,
        timeout: float = 300.0,
    ) -> None:
        self.model = model
        self.model_path = model_path
        self.model_name = model_name
        self.n_ctx = n_ctx
        self.n_threads = n_threads
        self.n_batch = n_batch
        self.temperature = temperature
        self.top_p = top_p
        self.top_k = top_k
        self.min_p = min_p
        self.repeat_penalty = repeat_penalty
        self.seed = seed
        self.max_tokens = max_tokens
        self.timeout = timeout
        if not n_threads:
            _FREE_CORES.start()  # the first call's window: from now (a run's ingest, say)

    def check_params(self) -> None:
        """Raise a ConfigError for a value out of range, an unknown embedded model or a
        model file that is not there (config validation runs it; nothing is loaded)."""
        self.check_bounds(f"llm '{self.backend}'")
        if self.model_path:
            path = Path(self.model_path).expanduser()
            if not path.is_file():
                raise ConfigError(f"llm '{self.backend}': model_path: no model file at {path}")
            return
        try:
            catalog_model(self.model)
        except ModelFileError as exc:
            raise ConfigError(f"llm '{self.backend}': model: {exc}") from None

    def _defaults(self) -> dict[str, Any]:
        self.check_bounds(f"llm '{self.backend}'")  # a missing model is the call's error
        return {
            "temperature": float(self.temperature), "top_p": float(self.top_p),
            "top_k": int(self.top_k), "min_p": float(self.min_p),
            "repeat_penalty": float(self.repeat_penalty), "seed": int(self.seed),
            "max_tokens": int(self.max_tokens),
        }

    # ------------------------------------------------------------------ identity

    @property
    def name(self) -> str:
        """The model's name: ``model_name``, else the embedded name or the file's stem."""
        if self.model_name:
            return self.model_name
        return Path(self.model_path).stem if self.model_path else catalog_model(self.model).name

    def digest(self) -> str:
        """sha256 of the GGUF file (assembles the embedded model if needed)."""
        return resolve_model_path(self.model_path or None, model=self.model)[1]

    def cache_identity(self, **overrides: Any) -> dict[str, Any]:
        """What identifies this call's output apart from the messages (for the cache key)."""
        params = {k: v for k, v in self.params().items() if k not in self.cache_exempt}
        params.update(resolve_generation(self.backend, self._defaults(), overrides))
        return {"backend": self.backend, "model": self.name, "digest": self.digest(),
                "params": params}

    def threads(self) -> int:
        """The threads a call uses now: ``n_threads``, else the cores others leave free."""
        return self.n_threads or _FREE_CORES(os.cpu_count() or 1)

    @contextmanager
    def session(self) -> Iterator[tuple[Any, str, int]]:
        """The loaded Llama held for one call (its lock and the process's CPU turn taken),
        set to the threads a call uses now; with the model digest and that thread count.
        Every call runs in one."""
        llama, lock, digest = self.llama()
        with cpu_turn(), lock:  # the process's CPU turn first: memlab.compute
            threads = self.threads()
            llama._ctx.set_n_threads(threads, threads)
            yield llama, digest, threads

    def llama(self) -> tuple[Any, threading.Lock, str]:
        """The loaded Llama, its lock and the model digest."""
        path, digest = resolve_model_path(self.model_path or None, model=self.model)
        llama, lock = load_llama(path, self.n_ctx, self.n_threads or os.cpu_count() or 1,
                                 self.n_batch)
        return llama, lock, digest

    # ------------------------------------------------------------------ tokens

    def prompt_token_ids(self, messages: Sequence[Message]) -> list[int]:
        """The prompt exactly as the model sees it: its chat template, its tokenizer."""
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        llama, _, _ = self.llama()
        formatter = Jinja2ChatFormatter(
            template=llama.metadata["tokenizer.chat_template"],
            eos_token=llama._model.token_get_text(llama.token_eos()),
            bos_token=llama._model.token_get_text(llama.token_bos()),
        )
        result = formatter(messages=cast(Any, check_messages(messages)))
        return llama.tokenize(result.prompt.encode("utf-8"),
                              add_bos=not result.added_special, special=True)

    def count_prompt_tokens(self, messages: Sequence[Message]) -> int:
        return len(self.prompt_token_ids(messages))

    # ------------------------------------------------------------------ generate

    def generate(self, messages: Sequence[Message], *,
                 on_token: Callable[[str], None] | None = None,
                 **overrides: Any) -> Completion:
        """One chat completion; ``on_token`` (not part of any cache key) receives the text
        as it is generated."""
        start = time.perf_counter()
        gen = resolve_generation(self.backend, self._defaults(), overrides)
        chat = check_messages(messages)
        digest = ""
        try:
            with self.session() as (llama, digest, threads):
                tokens = None if on_token is None else _Tokens(llama, on_token)
                response, deadline = self._complete(llama, chat, gen, threads, tokens)
        except (MemlabError, ValueError, RuntimeError) as exc:
            error = exc if isinstance(exc, LLMCallError) else PermanentError(str(exc))
            return failed(error, model=self.name, digest=digest,
                          seconds=time.perf_counter() - start,
                          metadata={"backend": self.backend, "attempts": 1})
        if tokens is not None and not deadline.hit:  # the stream is the whole raw text
            tokens.finish(response["choices"][0]["message"].get("content") or "")
        return self._completion(llama, chat, response, deadline, digest, start)

    def _complete(self, llama: Any, chat: list[Message], gen: dict[str, Any], threads: int,
                  tokens: _Tokens | None = None) -> tuple[dict[str, Any], _Deadline]:
        import llama_cpp.llama_cpp as capi
        from llama_cpp import LogitsProcessorList

        deadline = _Deadline(self.timeout, llama.token_eos())
        processors: list[Any] = [deadline]
        if tokens is not None:
            processors.append(tokens)
        capi.llama_perf_context_reset(llama._ctx.ctx)
        response = llama.create_chat_completion(
            messages=chat, temperature=gen["temperature"], top_p=gen["top_p"],
            top_k=gen["top_k"], min_p=gen["min_p"], repeat_penalty=gen["repeat_penalty"],
            seed=gen["seed"], max_tokens=gen["max_tokens"], model=self.name,
            logits_processor=LogitsProcessorList(processors),
            response_format=({"type": "json_object", "schema": gen["json_schema"]}
                             if "json_schema" in gen else None),
        )
        perf = capi.llama_perf_context(llama._ctx.ctx)
        response["perf"] = {
            "n_threads": threads, "prompt_eval_tokens": perf.n_p_eval,
            "prompt_eval_seconds": perf.t_p_eval_ms / 1e3,
            "eval_tokens": perf.n_eval, "eval_seconds": perf.t_eval_ms / 1e3,
        }
        return response, deadline

    def _completion(self, llama: Any, chat: list[Message], response: dict[str, Any],
                    deadline: _Deadline, digest: str, start: float) -> Completion:
        seconds = time.perf_counter() - start
        choice = response["choices"][0]
        raw = choice["message"].get("content") or ""
        thinking, answer = split_thinking(raw)
        template = llama.metadata.get("tokenizer.chat_template", "")
        default_system = QWEN25_DEFAULT_SYSTEM if QWEN25_DEFAULT_SYSTEM in template else ""
        metadata = {
            "backend": self.backend, "attempts": 1, "finish_reason": choice.get("finish_reason"),
            "n_ctx": self.n_ctx, **response["perf"],
            **qwen_counts(chat, raw, tokenizer_for(self.name), default_system),
        }
        usage = response["usage"]
        error = None
        if deadline.hit:
            error = f"timed out after {self.timeout:g} s (generation stopped)"
            metadata["partial_text"] = answer
            answer, thinking = "", ""
        return Completion(
            text=answer, prompt_tokens=int(usage["prompt_tokens"]),
            completion_tokens=int(usage["completion_tokens"]), seconds=seconds,
            model=self.name, digest=digest, thinking=thinking, error=error, metadata=metadata,
        )
