"""One CPU-heavy step at a time in a process: its turns, first come, first served.

llama.cpp's threads wait for each other at every decoding step, so a thread of the same
process busy beside them (an embedder encoding a background import while the agent
answers a chat) stalls every step. Measured on a 2-core machine (``python -m memlab.bench
llm --repeats 2 --beside-encoder``, a thread encoding batches of 64 texts with the bundled
MiniLM meanwhile): a cold call took 7.7 s alone and 54.5 s beside the encoder with turns
off (``MEMLAB_CPU_TURNS=0``), 7.7 s with them. Other processes are
:class:`memlab.llm.llamacpp.FreeCores`' business; inside one, the CPU-heavy steps take
turns instead: a llama.cpp call holds one for the whole call, an embedder one per batch,
so an answer waits for at most one batch, and an import goes on between answers.

A turn is reentrant (a thread holding one takes it again at once) and fair: when it is
given back, the thread that asked first gets it, so a loop of short steps cannot starve a
waiting call; but a thread working in the :func:`background` (an import) gets it only when
no other thread is waiting, so a chat waits for the step running when it asks, not for the
import's queue. A llama.cpp call takes its turn before its model's lock, so the turn's
order is the model's order too. Do not wait inside a turn for another thread that needs one.

``MEMLAB_CPU_TURNS=0`` turns them off: on a machine with cores to spare beside a fixed
``n_threads`` (say 8 of 32), an import's encoding can then run beside the answers.
"""

from __future__ import annotations

import itertools
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager


class Turns:
    """First come, first served, reentrant turns at the CPU (see the module docstring)."""

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self._changed = threading.Condition()
        self._waiting: list[tuple[bool, int]] = []  # (background, arrival): least goes next
        self._arrivals = itertools.count()
        self._owner: int | None = None
        self._depth = 0

    @contextmanager
    def turn(self) -> Iterator[None]:
        """Hold the CPU's turn for the ``with`` block (waiting for it if need be)."""
        if not self.enabled:
            yield
            return
        me = threading.get_ident()
        with self._changed:
            if self._owner == me:
                self._depth += 1
            else:
                ticket = (in_background(), next(self._arrivals))
                self._waiting.append(ticket)
                try:
                    while self._owner is not None or min(self._waiting) != ticket:
                        self._changed.wait()
                except BaseException:  # interrupted while waiting: the next one's turn
                    self._waiting.remove(ticket)
                    self._changed.notify_all()
                    raise
                self._waiting.remove(ticket)
                self._owner, self._depth = me, 1
        try:
            yield
        finally:
            with self._changed:
                self._depth -= 1
                if self._depth == 0:
                    self._owner = None
                    self._changed.notify_all()


_THREAD = threading.local()


def in_background() -> bool:
    """Whether this thread works in the :func:`background`."""
    return bool(getattr(_THREAD, "background", False))


@contextmanager
def background() -> Iterator[None]:
    """This thread's turns, for the ``with`` block, come after every other thread waiting
    (a background import behind the chats)."""
    before = in_background()
    _THREAD.background = True
    try:
        yield
    finally:
        _THREAD.background = before


#: The process's turns: every llama.cpp call and every embedder batch takes one.
TURNS = Turns(enabled=os.environ.get("MEMLAB_CPU_TURNS", "1").strip() != "0")
cpu_turn = TURNS.turn
