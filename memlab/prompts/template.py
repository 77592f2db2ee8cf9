"""One prompt template: a Jinja2 file with a header, rendered into chat messages.

File format (``builtin/answer_short.j2``)::

    {#-
    name: answer_short          # must equal the file name without .j2
    version: 1                  # bump whenever the wording changes
    purpose: one line for `ls`
    output: text                # parser for the model's answer (see parsing.PARSERS)
    variables: [question, memories]          # required
    defaults: {asked_at: null, speakers: []} # optional variables and their defaults
    source: where the wording comes from, if anywhere
    -#}
    ---system---
    {% block system %}...{% endblock %}
    ---user---
    {% block user %}...{% endblock %}

The header is a Jinja comment holding YAML, so Jinja itself ignores it. The rendered
text is cut into messages at the markers ``---system---`` / ``---user---`` /
``---assistant---`` (conventionally alone on a line); each part is stripped and empty
parts are dropped, so a template may have only a user part (LongMemEval's judge is a
single user message). Markers arriving through variables
(dataset text) are defused, so a conversation cannot inject a role. Blocks let a user
template extend a built-in one: ``{% extends "builtin/answer_short.j2" %}`` and override
just ``{% block system %}``.

Rendering uses ``StrictUndefined``: a missing variable is a ConfigError naming the
template and the variables it takes, never an empty string in the prompt.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import jinja2

from memlab.errors import ConfigError
from memlab.prompts.parsing import PARSERS

ROLES = ("system", "user", "assistant")
_MARKER = re.compile(r"---(system|user|assistant)---")
_HEADER = re.compile(r"\A\s*\{#-?(?P<yaml>.*?)-?#\}", re.DOTALL)
_REQUIRED_KEYS = ("name", "version", "purpose")


@dataclass(frozen=True, slots=True)
class Rendered:
    """Chat messages from one rendering, with what produced them.

    ``sha256`` is the hash of the messages as canonical JSON (keys sorted, no spaces,
    UTF-8): two prompts with equal hashes are byte-identical. The harness records
    ``record()`` with every answer.
    """

    messages: list[dict[str, str]]
    template: str
    version: int | str
    sha256: str

    @property
    def text(self) -> str:
        """The messages for reading: ``[role]`` headers, parts separated by blank lines."""
        return "\n\n".join(f"[{m['role']}]\n{m['content']}" for m in self.messages)

    def record(self) -> dict[str, Any]:
        return {"template": self.template, "template_version": self.version,
                "prompt_sha256": self.sha256}


@dataclass(frozen=True, slots=True)
class MemoryRow:
    """A retrieved memory as templates see it (``memories`` is a list of these)."""

    rank: int
    text: str
    at: datetime | None
    kind: str = ""
    score: float | None = None
    id: str = ""
    session_id: str = ""
    source_turn_ids: tuple[str, ...] = ()


@dataclass(frozen=True)
class Template:
    """A loaded template file. ``render(**variables)`` returns a :class:`Rendered`."""

    name: str
    version: int | str
    purpose: str
    path: Path
    output: str = "text"
    variables: tuple[str, ...] = ()
    defaults: Mapping[str, Any] = field(default_factory=dict)
    source: str = ""
    overrides: tuple[Path, ...] = ()
    jinja: jinja2.Template | None = field(default=None, compare=False, repr=False)
    #: header ``allow_empty: true``: an empty model answer is valid (else it is an error)
    allow_empty: bool = False

    @property
    def id(self) -> str:
        return f"{self.name}@{self.version}"

    def render(self, **variables: Any) -> Rendered:
        """Messages for ``variables`` (required ones checked first, defaults filled in)."""
        missing = [v for v in self.variables if v not in variables]
        if missing:
            raise ConfigError(f"{self._where()}: missing variable(s) {', '.join(missing)}; "
                              f"it takes {self._signature()}")
        values = {**self.defaults, **variables}
        if "memories" in values:
            values["memories"] = memory_rows(values["memories"])
        assert self.jinja is not None, "templates are built by TemplateLibrary"
        try:
            text = self.jinja.render(**values)
        except jinja2.UndefinedError as exc:
            raise ConfigError(f"{self._where()}: {exc}; it takes {self._signature()}") from None
        except jinja2.TemplateError as exc:
            raise ConfigError(f"{self._where()}: {exc}") from None
        messages = split_messages(text, self._where())
        return Rendered(messages, self.name, self.version, messages_sha256(messages))

    def parse(self, text: str) -> Any:
        """The model's answer read with this template's ``output`` parser."""
        return PARSERS[self.output](text)

    def describe(self) -> dict[str, Any]:
        return {"kind": "prompt template", "name": self.name, "version": self.version,
                "summary": self.purpose, "output": self.output,
                "variables": list(self.variables), "defaults": dict(self.defaults),
                "path": str(self.path), "overrides": [str(p) for p in self.overrides],
                "source": self.source, "params": []}

    def _where(self) -> str:
        return f"template '{self.name}' v{self.version} ({self.path})"

    def _signature(self) -> str:
        optional = [f"{k}={v!r}" for k, v in self.defaults.items()]
        return ", ".join([*self.variables, *optional]) or "(no variables)"


def read_header(path: Path, text: str) -> dict[str, Any]:
    """The YAML header of a template file, checked for the required keys."""
    import yaml

    match = _HEADER.match(text)
    if not match:
        raise ConfigError(f"{path}: a template must start with a {{# ... #}} YAML header "
                          f"giving {', '.join(_REQUIRED_KEYS)}")
    try:
        header = yaml.safe_load(match.group("yaml")) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: header is not valid YAML: {exc}") from None
    if not isinstance(header, dict):
        raise ConfigError(f"{path}: header must be a YAML mapping")
    missing = [k for k in _REQUIRED_KEYS if k not in header]
    if missing:
        raise ConfigError(f"{path}: header lacks {', '.join(missing)}")
    if header["name"] != path.stem:
        raise ConfigError(f"{path}: header name {header['name']!r} must equal the file "
                          f"name {path.stem!r}")
    output = header.get("output", "text")
    if output not in PARSERS:
        raise ConfigError(f"{path}: unknown output {output!r}; valid: {', '.join(PARSERS)}")
    return header


def split_messages(text: str, where: str) -> list[dict[str, str]]:
    """Cut rendered text into messages at the role marker lines."""
    parts = _MARKER.split(text)
    if parts[0].strip():
        raise ConfigError(f"{where}: text before the first ---system---/---user--- marker")
    messages = []
    for role, content in zip(parts[1::2], parts[2::2], strict=True):
        if content.strip():
            messages.append({"role": role, "content": content.strip()})
    if not any(m["role"] == "user" for m in messages):
        raise ConfigError(f"{where}: rendered no user message")
    return messages


def messages_sha256(messages: Sequence[Mapping[str, str]]) -> str:
    canonical = json.dumps(list(messages), ensure_ascii=False, sort_keys=True,
                           separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def memory_rows(memories: Any) -> list[MemoryRow]:
    """Hits, MemoryUnits or mappings (in rank order) as :class:`MemoryRow` s."""
    if memories is None:
        return []
    rows = []
    for rank, item in enumerate(memories, start=1):
        if isinstance(item, MemoryRow):
            rows.append(item)
            continue
        score = getattr(item, "score", None)
        unit = getattr(item, "unit", item)
        get = unit.get if isinstance(unit, Mapping) else lambda k, d=None, u=unit: getattr(u, k, d)
        rows.append(MemoryRow(
            rank=rank, text=str(get("text", "")), at=get("at"), kind=str(get("kind", "")),
            score=get("score", score), id=str(get("id", "")),
            session_id=str(get("session_id", "")),
            source_turn_ids=tuple(get("source_turn_ids", ()) or ()),
        ))
    return rows


def defuse_markers(value: Any) -> Any:
    """Jinja ``finalize`` hook: role markers inside variable text lose their power."""
    if isinstance(value, str) and "---" in value:
        return _MARKER.sub(lambda m: f"- - -{m.group(1)}- - -", value)
    return value
