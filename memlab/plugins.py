"""Components of one's own, loaded wherever memlab runs: the CLI, worker processes, Ray.

A plugin is a Python module that registers components when imported (``from
memlab.retrieval import registry; registry.register("mine", MyStrategy)``). memlab
imports plugins from three places:

- a config's ``plugins:`` list - module names (``myplug``, importable) or ``.py`` files
  (relative to the config file); imported before the config's components are checked,
  and again in every worker process and Ray task that replays it;
- ``MEMLAB_PLUGINS`` - the same, separated by commas, for commands without a config
  (``python -m memlab.eval ls``);
- installed packages' entry points in the group ``memlab.plugins`` (``[project.entry-points
  ."memlab.plugins"] myplug = "myplug"`` in their pyproject.toml).

Each plugin imported is recorded (:func:`loaded`: module, file and the file's sha256) in
the run's ``environment.json``, as code that made its numbers.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import os
import sys
from collections.abc import Iterable
from pathlib import Path
from types import ModuleType
from typing import Any

from memlab.errors import ConfigError

#: Entry point group of installed plugins.
GROUP = "memlab.plugins"

_LOADED: dict[str, dict[str, Any]] = {}
_ENVIRONMENT_DONE = False


def import_plugins(names: Iterable[str], where: str = "plugins") -> None:
    """Import each plugin (a module name or a ``.py`` file path) once; a plugin that fails
    to import is a ConfigError naming it (``where``: what listed it)."""
    for name in names:
        if name in _LOADED:
            continue
        try:
            module = _import(name)
        except ConfigError as exc:  # named with what listed it (a config's plugins:, a flag)
            raise ConfigError(f"{where}: {exc}") from None
        except Exception as exc:  # the plugin's own error, named as the plugin's
            raise ConfigError(f"{where}: plugin {name!r} failed to import: "
                              f"{type(exc).__name__}: {exc}") from exc
        _LOADED[name] = _record(name, module)


def environment_plugins() -> None:
    """Import ``MEMLAB_PLUGINS`` and the installed ``memlab.plugins`` entry points (once
    per process; called when a registry is first asked for)."""
    global _ENVIRONMENT_DONE
    if _ENVIRONMENT_DONE:
        return
    _ENVIRONMENT_DONE = True  # first: a plugin asking for a registry must not recurse
    listed = [n.strip() for n in os.environ.get("MEMLAB_PLUGINS", "").split(",") if n.strip()]
    import_plugins(listed, "MEMLAB_PLUGINS")
    from importlib.metadata import entry_points

    for point in entry_points(group=GROUP):
        key = f"{GROUP}:{point.name}"
        if key in _LOADED:
            continue
        try:
            found = point.load()  # a module, or a function that registers (then called)
            if callable(found) and not isinstance(found, ModuleType):
                found()
        except Exception as exc:
            raise ConfigError(f"entry point {point.name!r} ({GROUP}, {point.value}) failed "
                              f"to import: {type(exc).__name__}: {exc}") from exc
        _LOADED[key] = _record(point.value, sys.modules.get(point.module))


def loaded() -> dict[str, dict[str, Any]]:
    """Every plugin imported in this process: name -> module, file, sha256."""
    return {name: dict(info) for name, info in _LOADED.items()}


def resolve_paths(names: Iterable[str], base: Path) -> list[str]:
    """``names`` with relative ``.py`` paths made absolute against ``base`` (the config
    file's folder), so worker processes elsewhere find the same files."""
    return [str((base / n).resolve()) if n.endswith(".py") and not Path(n).is_absolute()
            else n for n in names]


def _import(name: str) -> Any:
    if not name.endswith(".py"):
        try:
            return importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name and name.startswith(exc.name):
                raise ConfigError(f"plugin {name!r}: no module of that name on the path "
                                  f"(sys.path[0] {sys.path[0]!r}); install it, add its "
                                  "folder to PYTHONPATH, or give its .py file") from None
            raise
    path = Path(name)
    if not path.is_file():
        raise ConfigError(f"plugin {name!r}: no such file")
    module_name = f"memlab_plugin_{path.stem}_{hashlib.sha1(str(path).encode()).hexdigest()[:8]}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise ConfigError(f"plugin {name!r}: not a Python file Python can load")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(module_name, None)
        raise
    return module


def _record(name: str, module: Any) -> dict[str, Any]:
    file = getattr(module, "__file__", None)
    sha = None
    if file and Path(file).is_file():
        sha = hashlib.sha256(Path(file).read_bytes()).hexdigest()
    return {"module": getattr(module, "__name__", name), "file": file, "sha256": sha}
