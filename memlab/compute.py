"""One CPU-heavy step at a time in a process: its turns, first come, first served.

llama.cpp's threads wait for each other at every decoding step, so a thread of the same
process busy beside them (an embedder encoding a background import while the agent
answers a chat) stalls every step. Measured on a 2-core machine (``bench llm`` style, one
process, a thread encoding batches of 64 texts with the bundled MiniLM meanwhile): a
64-token answer took 2.4 s alone and 31.5 s beside the encoder. Other processes are
:class:`memlab.llm.llamacpp.FreeCores`' business; inside one, the CPU-heavy steps take
turns instead: a llama.cpp call holds one for the whole call, an embedder one per batch,
so an answer waits for at most one batch, and an import goes on between answers.

A turn is reentrant (a thread holding one takes it again at once) and fair: when it is
given back, the thread that asked first gets it, so a loop of short steps cannot starve a
waiting call. Take a turn innermost, after any other lock, and do not wait inside one for
another thread that needs a turn.

``MEMLAB_CPU_TURNS=0`` turns them off: on a machine with cores to spare beside a fixed
``n_threads`` (say 8 of 32), an import's encoding can then run beside the answers.
"""

from __future__ import annotations

import os
import threading
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager


class Turns:
    """First come, first served, reentrant turns at the CPU (see the module docstring)."""

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self._changed = threading.Condition()
        self._waiting: deque[object] = deque()
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
                ticket = object()
                self._waiting.append(ticket)
                try:
                    while self._owner is not None or self._waiting[0] is not ticket:
                        self._changed.wait()
                except BaseException:  # interrupted while waiting: the next one's turn
                    self._waiting.remove(ticket)
                    self._changed.notify_all()
                    raise
                self._waiting.popleft()
                self._owner, self._depth = me, 1
        try:
            yield
        finally:
            with self._changed:
                self._depth -= 1
                if self._depth == 0:
                    self._owner = None
                    self._changed.notify_all()


#: The process's turns: every llama.cpp call and every embedder batch takes one.
TURNS = Turns(enabled=os.environ.get("MEMLAB_CPU_TURNS", "1").strip() != "0")
cpu_turn = TURNS.turn
