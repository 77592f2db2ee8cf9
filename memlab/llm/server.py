"""``python -m memlab.llm.server [llama_cpp.server options]``: serve a GGUF over HTTP.

A thin launcher for llama-cpp-python's OpenAI-compatible server (``python -m
llama_cpp.server``) that

1. serves the embedded Qwen when no ``--model`` is given, and a catalog model when
   ``--model`` names one (``qwen2.5-coder-1.5b``), assembling it first;
2. publishes the weights' sha256 in the model's id, ``<file name>@sha256:<hex>``, unless
   ``--model_alias`` is given: OpenAI-compatible servers report no weights digest, so
   this is how memlab's ``openai`` backend learns it and records it with every answer
   (``GET /v1/models``; the server answers every model name with its one model);
3. applies the same AMX workaround as the in-process backend (see
   :mod:`memlab.llm.llamacpp`), without which the server crashes on its first request on
   AMX-capable CPUs.

Every other option is llama_cpp.server's own (``--host``, ``--port``, ``--n_ctx``,
``--n_threads``, …).
"""

from __future__ import annotations

import sys
from pathlib import Path

from memlab.llm.common import served_id
from memlab.llm.llamacpp import cpu_workarounds
from memlab.llm.models import CATALOG, ensure_embedded_model, file_digest


def _option(args: list[str], name: str) -> str | None:
    """The value of ``--name X`` / ``--name=X`` in ``args`` (None when absent)."""
    for i, arg in enumerate(args):
        if arg == name and i + 1 < len(args):
            return args[i + 1]
        if arg.startswith(name + "="):
            return arg.split("=", 1)[1]
    return None


def _with_option(args: list[str], name: str, value: str) -> list[str]:
    """``args`` with the value of ``--name X`` / ``--name=X`` replaced by ``value``."""
    out = list(args)
    for i, arg in enumerate(out):
        if arg == name and i + 1 < len(out):
            out[i + 1] = value
            break
        if arg.startswith(name + "="):
            out[i] = f"{name}={value}"
            break
    return out


def server_args(args: list[str]) -> list[str]:
    """llama_cpp.server's arguments: the embedded model when none is named, a catalog
    model's file when one is named, and the model id carrying its digest when no alias is
    named."""
    if "-h" in args or "--help" in args:
        return args
    model = _option(args, "--model")
    if model is None:
        model = str(ensure_embedded_model())
        args = ["--model", model, *args]
    elif not Path(model).expanduser().is_file() and model in CATALOG:
        model = str(ensure_embedded_model(CATALOG[model]))
        args = _with_option(args, "--model", model)
    if _option(args, "--model_alias") is None and Path(model).is_file():
        args = [*args, "--model_alias", served_id(model, file_digest(model))]
    return args


def main(argv: list[str] | None = None) -> int:
    args = server_args(list(sys.argv[1:] if argv is None else argv))
    from llama_cpp.server.__main__ import main as serve

    sys.argv = ["python -m memlab.llm.server", *args]
    with cpu_workarounds():
        serve()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
