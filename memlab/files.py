"""Config and record files read with errors that say where: a YAML key given twice is an
error (PyYAML keeps the last one without a word), every YAML problem is a
:class:`ConfigError` naming the file (or the ``--set`` item) and the line, and a damaged
JSON record names its file and line instead of a decoder traceback."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from memlab.errors import ConfigError, MemlabError


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses a mapping key given twice."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:  # before merge keys (<<) are flattened in
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=deep)
            line = key_node.start_mark.line + 1
            try:
                first = seen.get(key)
            except TypeError:  # an unhashable key: the base class says so
                break
            if first is not None:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key {key!r} given twice (first on line {first}; the "
                    "second would silently win)", key_node.start_mark)
            seen[key] = line
        return super().construct_mapping(node, deep=deep)


def parse_yaml(text: str, where: str) -> Any:
    """``text`` parsed as YAML; ConfigError ``{where}: invalid YAML ...`` when it is not."""
    try:
        return yaml.load(text, Loader=_UniqueKeyLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        what = "; ".join(part for part in (exc.context, exc.problem) if part)
        raise ConfigError(f"{where}: invalid YAML{at}: {what}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{where}: invalid YAML: {' '.join(str(exc).split())}") from None


def read_yaml(path: Path) -> Any:
    """The YAML file at ``path`` (ConfigError for a missing, non-UTF-8 or invalid file)."""
    if path.is_dir():
        raise ConfigError(f"{path}: is a directory, not a config file")
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (byte {exc.start}: "
                          f"{exc.object[exc.start:exc.start + 1]!r})") from None
    return parse_yaml(text, str(path))


def read_json(path: Path, what: str = "") -> Any:
    """The JSON file at ``path``; a MemlabError naming the file (and ``what`` it is, e.g.
    "the run's metrics") when it is missing or damaged, not a decoder traceback."""
    import json

    label = f"{path}" + (f" ({what})" if what else "")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise MemlabError(f"{label}: file not found") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        where = (f" at line {exc.lineno}, column {exc.colno}: {exc.msg}"
                 if isinstance(exc, json.JSONDecodeError) else ": not UTF-8 text")
        raise MemlabError(f"{label}: damaged JSON{where}") from None
