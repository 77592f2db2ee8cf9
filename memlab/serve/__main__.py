"""``python -m memlab.serve [--config letta_config.json] [--port 8888] ...``.

Flags win over environment variables, which win over the settings file (see
:mod:`memlab.agent.settings` for every key and variable). Binds to 127.0.0.1 unless
told otherwise; a non-loopback host without an API key is refused.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import sys

from memlab.errors import MemlabError

_FLAGS = {
    "experiment": "experiment", "data_dir": "memory.data_dir", "host": "server.host",
    "port": "server.port", "api_key": "server.api_key", "backend": "model.type",
    "model": "model.name", "max_tokens": "model.max_tokens",
    "context_window": "model.context_window", "embedding_model": "model.embedding_model",
    "max_body_bytes": "server.max_body_bytes", "max_import_bytes": "server.max_import_bytes",
}


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m memlab.serve",
                                     description="Serve the memlab agent over HTTP.")
    parser.add_argument("--config", help="settings JSON (letta_config.json shape); "
                        "default $MEMLAB_SERVE_CONFIG")
    parser.add_argument("--experiment", help="experiment YAML (default experiments/agent.yaml)")
    parser.add_argument("--data-dir", dest="data_dir", help="where memories persist")
    parser.add_argument("--host", help="bind address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port (default 8888)")
    parser.add_argument("--api-key", dest="api_key", help="require this X-API-Key")
    parser.add_argument("--backend", choices=["llamacpp", "ollama", "openai"],
                        help="model backend (default: the experiment's)")
    parser.add_argument("--model", help="llama.cpp: a catalog name (qwen2.5-coder-0.5b, "
                        "qwen2.5-coder-1.5b) or a GGUF path; Ollama / OpenAI: the server's "
                        "model name")
    parser.add_argument("--max-tokens", dest="max_tokens", type=int, help="answer length cap")
    parser.add_argument("--context-window", dest="context_window", type=int)
    parser.add_argument("--embedding-model", dest="embedding_model")
    parser.add_argument("--max-body-bytes", dest="max_body_bytes", type=int)
    parser.add_argument("--max-import-bytes", dest="max_import_bytes", type=int,
                        help="body limit of POST /users/{user_id}/import (default 32 MiB)")
    parser.add_argument("--workers", type=int, default=1,
                        help="server processes (more than 1 needs a shared store that "
                        "tracks changes: memory.store pgvector)")
    parser.add_argument("--log-level", default="info")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    import uvicorn

    from memlab.agent import load_settings
    from memlab.serve import build_app

    args = parse(argv)
    try:
        settings = load_settings(args.config, overrides={
            key: getattr(args, flag) for flag, key in _FLAGS.items()})
        _check_exposure(settings.server.host, settings.server.api_key)
        _check_port(settings.server.host, settings.server.port)
        _check_store(args.workers, settings)
        app = build_app(settings) if args.workers == 1 else None
    except MemlabError as exc:
        print(f"memlab.serve: {exc}", file=sys.stderr)
        return 2
    server = settings.server
    print(f"memlab agent on http://{server.host}:{server.port} (docs: /docs, /redoc); "
          f"data in {settings.data_dir()}", flush=True)
    if app is not None:
        uvicorn.run(app, host=server.host, port=server.port, log_level=args.log_level)
        return 0
    # each worker process builds its own agent from the same (already validated) settings
    os.environ[SETTINGS_VAR] = settings.model_dump_json()
    uvicorn.run("memlab.serve.__main__:worker_app", factory=True, workers=args.workers,
                host=server.host, port=server.port, log_level=args.log_level)
    return 0


SETTINGS_VAR = "MEMLAB_SERVE_SETTINGS_JSON"


def worker_app() -> object:
    """The app of one of several worker processes (settings from the parent process)."""
    from memlab.agent.settings import AgentSettings
    from memlab.serve import build_app

    return build_app(AgentSettings.model_validate_json(os.environ[SETTINGS_VAR]))


def _check_store(workers: int, settings: object) -> None:
    """The store the users' memories go to, built once before serving. Several workers hold
    users' memories in RAM each: only a store that counts its writes (pgvector) lets a
    worker see what another one wrote. A shared store is asked once, so a wrong DSN, role
    or database fails the start, not the first memory request."""
    from memlab.agent.build import user_store
    from memlab.errors import ConfigError
    from memlab.spec import build

    if workers < 1:
        raise ConfigError(f"--workers must be >= 1, got {workers}")
    store = build("store", user_store(settings, "check"))  # type: ignore[arg-type]
    try:
        shared = hasattr(store, "version")
        if workers > 1 and not shared:
            raise ConfigError(f"--workers {workers} needs memory.store set to a shared store "
                              f"that tracks changes (pgvector); {type(store).__name__} does "
                              "not")
        if workers > 1:
            _check_memory_keeps_store(workers, settings)
        if shared:
            store.version()
    finally:
        close = getattr(store, "close", None)
        if close is not None:
            close()


def _check_memory_keeps_store(workers: int, settings: object) -> None:
    from memlab.errors import ConfigError
    from memlab.eval.config import load_config
    from memlab.memory import registry

    memory = load_config(settings.experiment).memory  # type: ignore[attr-defined]
    name = "flat" if memory is None else memory.name
    if "store" not in {p.name for p in registry.params(name)}:
        raise ConfigError(f"--workers {workers}: memory '{name}' keeps no store (each process "
                          "would rebuild it from the conversation log and hold its own copy, "
                          "blind to the others' writes); run one worker, or a memory with a "
                          "store (tiered, extracted)")


def _check_port(host: str, port: int) -> None:
    """A ConfigError when another process listens on ``port`` already, at any address the
    host names (before the model is loaded, with the flag that changes it), instead of
    uvicorn's bare errno; anything else is left to uvicorn."""
    import errno
    import socket

    from memlab.errors import ConfigError

    if port == 0:
        return
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError:
        return  # uvicorn reports a host it cannot resolve
    for family, kind, proto, _, address in infos:
        try:
            with socket.socket(family, kind, proto) as probe:
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn
                probe.bind(address)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise ConfigError(f"port {port} on {host} is in use (another server, or an "
                                  "earlier memlab.serve still running); choose another with "
                                  "--port or MEMLAB_PORT") from None


def _check_exposure(host: str, api_key: str | None) -> None:
    from memlab.errors import ConfigError

    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = host == "localhost"
    if not loopback and not api_key:
        raise ConfigError(f"refusing to listen on {host} without an API key: set "
                          "server.api_key, MEMLAB_API_KEY or --api-key")


if __name__ == "__main__":
    raise SystemExit(main())
