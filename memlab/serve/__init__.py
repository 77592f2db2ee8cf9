"""``python -m memlab.serve``: the live agent behind the Letta seed's HTTP API.

:func:`create_app` builds the FastAPI app for an agent; :func:`build_app` does it from
settings (file, environment, flags - see :mod:`memlab.agent.settings`).
"""

from __future__ import annotations

from typing import Any

from memlab.serve.app import API_KEY_HEADER, create_app

__all__ = ["API_KEY_HEADER", "build_app", "create_app"]


def build_app(settings: Any = None, *, llm: Any = None) -> Any:
    """The app for ``settings`` (default: :func:`memlab.agent.load_settings`)."""
    from memlab.agent import from_config, load_settings

    settings = settings or load_settings()
    agent = from_config(settings=settings, llm=llm)
    return create_app(agent, api_key=settings.server.api_key,
                      max_body_bytes=settings.server.max_body_bytes,
                      max_import_bytes=settings.server.max_import_bytes,
                      body_timeout=settings.server.body_timeout,
                      stream_keepalive=settings.server.stream_keepalive)
