"""ONNX Runtime backend for a mean-pooled sentence-transformers BERT (the bundled MiniLM).

The model is exported once from its local weights with ``torch.onnx`` (offline: nothing
is downloaded), with the mean pooling inside the graph, and cached under
``$MEMLAB_CACHE_DIR/onnx/<folder>-<weights digest>-<recipe>/model-fp32.onnx``; ``int8``
adds a dynamically quantised copy beside it (weights in int8 per output channel, via
``onnxruntime.quantization``; per-tensor int8 loses too much: cosine to fp32 down to
0.88 on LoCoMo turns, against 0.984 per channel). ``RECIPE`` names how the files are
made and is part of the embedder's model id, so a changed recipe never reuses vectors.
Files are written to a temporary name and renamed, so processes exporting at once never
read half a file.

Encoding is faster than sentence-transformers' torch path on a CPU because ONNX Runtime
fuses the BERT layers, each distinct text is encoded once, and texts are sorted by token
length so each batch is padded only to its own longest text.
"""

from __future__ import annotations

import json
import os
import threading
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from memlab.cache import cache_root
from memlab.compute import cpu_turn
from memlab.embed.base import normalize_rows
from memlab.errors import ConfigError

PRECISIONS = ("fp32", "int8")
#: v2: BERT's attention traced in its eager form (matmul + softmax) instead of torch's
#: scaled_dot_product_attention, which the exporter writes as a longer chain of ops that
#: ONNX Runtime does not fuse: 10-15 % faster encoding on LoCoMo turns, cosine 0.9999998.
RECIPE = "v2"  # opset 17 torch.onnx export, mean pooling in the graph, int8 per channel
OPSET = 17
_EXPORT_LOCK = threading.Lock()


def model_path(folder: Path, digest: str, precision: str) -> Path:
    """Where the exported (or quantised) model of ``folder``'s weights is cached."""
    return cache_root() / "onnx" / f"{folder.name}-{digest}-{RECIPE}" / f"model-{precision}.onnx"


def ensure_model(folder: Path, digest: str, precision: str) -> Path:
    """The cached ONNX file for ``precision``, exported (and quantised) on first use."""
    if precision not in PRECISIONS:
        raise ConfigError(f"ONNX precision {precision!r} is not known; "
                          f"valid: {', '.join(PRECISIONS)}")
    fp32 = model_path(folder, digest, "fp32")
    target = model_path(folder, digest, precision)
    with _EXPORT_LOCK:
        if not fp32.is_file():
            fp32.parent.mkdir(parents=True, exist_ok=True)
            _atomic(fp32, lambda tmp: export(folder, tmp))
        if not target.is_file():
            _atomic(target, lambda tmp: quantize(fp32, tmp))
    return target


def max_length(folder: Path) -> int:
    """The model's token limit (``max_seq_length`` of sentence_bert_config.json, as
    sentence-transformers < 6 saves it, else the tokenizer's ``model_max_length``, as 6
    saves it, else 512): sentence-transformers truncates there, so the ONNX path must too."""
    for name, key in (("sentence_bert_config.json", "max_seq_length"),
                      ("tokenizer_config.json", "model_max_length")):
        config = folder / name
        found = json.loads(config.read_text()).get(key) if config.is_file() else None
        if isinstance(found, int | float) and 0 < found < 1_000_000:
            return int(found)
    return 512


def _atomic(target: Path, write: Any) -> None:
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        write(tmp)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def check_mean_pooling(folder: Path) -> None:
    """The ONNX graph pools by the mean: refuse models that pool otherwise."""
    config = folder / "1_Pooling" / "config.json"
    mode = json.loads(config.read_text()) if config.is_file() else {}
    # sentence-transformers < 6 writes pooling_mode_mean_tokens, 6 and later pooling_mode
    if not (mode.get("pooling_mode_mean_tokens") or mode.get("pooling_mode") == "mean"):
        raise ConfigError(f"backend 'onnx' needs a mean-pooled model; {config} does not "
                          "say pooling_mode_mean_tokens: true or pooling_mode: mean "
                          "(use backend 'torch')")


def export(folder: Path, target: Path) -> None:
    """Export the transformer of ``folder`` plus mean pooling to ONNX at ``target``."""
    import torch
    from transformers import AutoModel

    check_mean_pooling(folder)
    bert = AutoModel.from_pretrained(str(folder), local_files_only=True,
                                     attn_implementation="eager").eval()
    mask = torch.ones(2, 8, dtype=torch.int64)
    mask[1, 5:] = 0  # a padded row, so the traced graph masks padding
    sample = (torch.ones(2, 8, dtype=torch.int64), mask, torch.zeros(2, 8, dtype=torch.int64))
    axes = {0: "batch", 1: "tokens"}
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer notes on BERT's shape checks
        torch.onnx.export(
            _MeanPooled(bert), sample, str(target), dynamo=False, opset_version=OPSET,
            input_names=["input_ids", "attention_mask", "token_type_ids"],
            output_names=["embedding"],
            dynamic_axes={"input_ids": axes, "attention_mask": axes,
                          "token_type_ids": axes, "embedding": {0: "batch"}})


def quantize(source: Path, target: Path) -> None:
    """Dynamic int8 quantisation of ``source``'s weights, per output channel (activations
    are quantised on the fly, batch by batch)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(str(source), str(target), weight_type=QuantType.QInt8, per_channel=True)


class _MeanPooled:
    """``torch.nn.Module`` wrapper (built lazily so importing this file needs no torch)."""

    def __new__(cls, bert: Any) -> Any:
        import torch

        class MeanPooled(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.bert = bert

            def forward(self, input_ids: Any, attention_mask: Any, token_type_ids: Any) -> Any:
                hidden = self.bert(input_ids=input_ids, attention_mask=attention_mask,
                                   token_type_ids=token_type_ids).last_hidden_state
                mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
                return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)

        return MeanPooled()


class OnnxEncoder:
    """Texts -> unit vectors through one ONNX Runtime session and the model's tokenizer."""

    def __init__(self, path: Path, folder: Path, max_length: int, batch_size: int) -> None:
        import onnxruntime as ort
        from tokenizers import Tokenizer

        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # no busy-waiting between batches: the cores are shared (sweep workers, a server)
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = ort.InferenceSession(str(path), options,
                                            providers=["CPUExecutionProvider"])
        self.tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(max_length=max_length)
        self.batch_size = batch_size
        self.dim = int(self.session.get_outputs()[0].shape[-1])

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Unit vectors of ``texts``; each distinct text is encoded once."""
        distinct = list(dict.fromkeys(texts))
        if not distinct:
            return np.zeros((0, self.dim), dtype=np.float32)
        with cpu_turn():  # (the tokenizer's threads too: memlab.compute)
            encodings = self.tokenizer.encode_batch(distinct)
        order = np.argsort([len(e.ids) for e in encodings], kind="stable")
        vectors = np.empty((len(distinct), self.dim), dtype=np.float32)
        for start in range(0, len(order), self.batch_size):
            rows = order[start : start + self.batch_size]
            vectors[rows] = self._run([encodings[i] for i in rows])
        where = {text: i for i, text in enumerate(distinct)}
        return normalize_rows(vectors[[where[t] for t in texts]])

    def _run(self, batch: list[Any]) -> np.ndarray:
        width = max(len(e.ids) for e in batch)
        ids = np.zeros((len(batch), width), dtype=np.int64)
        mask = np.zeros_like(ids)
        types = np.zeros_like(ids)
        for row, enc in enumerate(batch):
            n = len(enc.ids)
            ids[row, :n], mask[row, :n], types[row, :n] = enc.ids, 1, enc.type_ids
        feeds = {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}
        with cpu_turn():  # a batch at a time: an LLM call waits for one at most
            return np.asarray(self.session.run(None, feeds)[0], dtype=np.float32)
