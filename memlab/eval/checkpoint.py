"""Checkpoints of a training loop, so a killed ``train-embedder`` / ``train-reranker`` goes
on from where it stopped.

A training that knows its whole batch schedule up front saves, every few batches, the
model's weights, the optimizer's state and torch's random state (dropout masks) under a
key of everything it trains on (the examples in order and every setting). Started again
with the same key, it skips the batches already trained and ends with the weights an
uninterrupted run gives; a checkpoint of another training is ignored (and overwritten),
an unreadable one (cut off by a kill mid-write) is warned about and ignored.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import warnings
from pathlib import Path
from typing import Any

from memlab.errors import ConfigError, MemlabWarning

#: The file in a training's output folder that holds it unfinished; removed once the
#: model is saved.
CHECKPOINT = "memlab-checkpoint.pt"


def training_key(examples: Any, *settings: Any) -> str:
    """sha256 of the examples (JSON-able, in order) and the settings."""
    text = json.dumps([examples, list(settings)], default=str)
    return hashlib.sha256(text.encode()).hexdigest()


class Checkpoint:
    """``folder/memlab-checkpoint.pt`` of the training identified by ``key``."""

    def __init__(self, folder: str | Path, key: str, every: int, command: str) -> None:
        if every < 1:
            raise ConfigError(f"{command}: checkpoint_every must be >= 1 batch, got {every}")
        self.path = Path(folder) / CHECKPOINT
        self.key = key
        self.every = every

    def resume(self, model: Any, optimizer: Any) -> int:
        """Batches already trained, with the model, optimizer and random state put back as
        they were after them; 0 without a checkpoint of this training."""
        import torch

        if not self.path.exists():
            return 0
        try:
            state = torch.load(self.path, map_location="cpu", weights_only=False)
        except Exception as exc:  # a cut-off file from a kill mid-write: start again
            warnings.warn(f"{self.path}: unreadable ({type(exc).__name__}); training from "
                          "the start", MemlabWarning, stacklevel=3)
            return 0
        if not isinstance(state, dict) or state.get("key") != self.key:
            return 0
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        torch.set_rng_state(state["rng"])
        print(f"resuming {self.path.parent} after batch {state['done']}", file=sys.stderr)
        return int(state["done"])

    def after(self, done: int, model: Any, optimizer: Any) -> None:
        """Called after batch ``done`` (counted from 1): saved every ``every`` batches."""
        if done % self.every == 0:
            self.save(done, model, optimizer)

    def save(self, done: int, model: Any, optimizer: Any) -> None:
        """Write the state after ``done`` batches (to a temporary file first: a kill while
        writing leaves the previous checkpoint whole)."""
        import torch

        self.path.parent.mkdir(parents=True, exist_ok=True)
        partial = self.path.with_suffix(".partial")
        torch.save({"key": self.key, "done": done, "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(), "rng": torch.get_rng_state()},
                   partial)
        os.replace(partial, self.path)

    def remove(self) -> None:
        """The model is saved: the checkpoint is no longer needed."""
        self.path.unlink(missing_ok=True)
