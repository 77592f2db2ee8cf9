"""Templates by name: the built-in files plus folders a user names.

A user folder is searched before the built-ins, so ``my_prompts/answer_short.j2``
replaces the built-in ``answer_short``; the replacement is logged, listed in
``library.overridden`` and kept on the template (``Template.overrides``) so the run
records it. Files whose names start with ``_`` are partials (macros, includes), not
templates. Every built-in stays reachable as ``builtin/<name>.j2`` for ``extends``.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import jinja2
import jinja2.meta
import jinja2.nodes

from memlab.errors import ConfigError, UnknownComponentError, did_you_mean
from memlab.prompts.template import Rendered, Template, defuse_markers, read_header

log = logging.getLogger(__name__)

BUILTIN_DIR = Path(__file__).with_name("builtin")
SUFFIX = ".j2"
#: what a template file might be called by mistake (said when a folder has one)
OTHER_SUFFIXES = frozenset({".jinja", ".jinja2", ".tmpl"})


class TemplateLibrary:
    """Name -> :class:`Template`, loaded lazily from ``extra_dirs`` then the built-ins."""

    kind = "prompt template"

    def __init__(self, extra_dirs: Iterable[str | Path] = ()) -> None:
        self.extra_dirs = tuple(Path(d).expanduser() for d in extra_dirs)
        self._templates: dict[str, Template] | None = None
        #: templates whose file is broken: the error is raised when one is asked for (a
        #: broken file does not make the folder's other templates unusable)
        self.broken: dict[str, ConfigError] = {}
        self.overridden: dict[str, list[Path]] = {}

    # -- lookup ------------------------------------------------------------------
    def names(self) -> list[str]:
        return sorted(self._load())

    def __contains__(self, name: object) -> bool:
        return name in self._load()

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._load())

    def get(self, name: str) -> Template:
        templates = self._load()
        if name in self.broken:
            raise self.broken[name]
        if name not in templates:
            close = did_you_mean(name, templates, n=3, cutoff=0.5)
            hint = f" D{close[1:]}" if close else ""
            raise UnknownComponentError(
                f"unknown prompt template '{name}'.{hint} Valid choices: "
                f"{', '.join(sorted(templates))}"
                + (f" (searched {', '.join(map(str, self.extra_dirs))} and the built-ins; "
                   f"a template is a {SUFFIX} file there)" if self.extra_dirs else
                   f" (your own: a {SUFFIX} file in a folder the config lists under "
                   "template_dirs:)")
            )
        return templates[name]

    __getitem__ = get

    def render(self, name: str, **variables: Any) -> Rendered:
        return self.get(name).render(**variables)

    def describe(self) -> list[dict[str, Any]]:
        """Every template with version, purpose and variables (for ``ls --json``)."""
        return [self.get(name).describe() for name in self.names()]

    # -- loading -----------------------------------------------------------------
    def _load(self) -> dict[str, Template]:
        if self._templates is None:
            for folder in self.extra_dirs:
                if not folder.is_dir():
                    raise ConfigError(f"template folder {folder} does not exist")
            env = self._environment()
            self._templates = {}
            for name, paths in self._files().items():
                try:
                    self._templates[name] = self._build(env, name, paths)
                except ConfigError as exc:
                    self.broken[name] = exc
        return self._templates

    def _files(self) -> dict[str, list[Path]]:
        """Template name -> its files, highest priority first."""
        found: dict[str, list[Path]] = {}
        for folder in (*self.extra_dirs, BUILTIN_DIR):
            for path in sorted(folder.glob(f"*{SUFFIX}")):
                if not path.name.startswith("_"):
                    found.setdefault(path.name[: -len(SUFFIX)], []).append(path)
        for folder in self.extra_dirs:
            unread = sorted(p.name for p in folder.iterdir() if p.suffix in OTHER_SUFFIXES)
            if unread:
                log.warning("template folder %s: %s not read (a template is a %s file)",
                            folder, ", ".join(unread), SUFFIX)
        return found

    def _build(self, env: jinja2.Environment, name: str, paths: list[Path]) -> Template:
        path = paths[0]
        if len(paths) > 1:
            self.overridden[name] = paths[1:]
            log.warning("prompt template '%s' from %s overrides %s", name, path,
                        ", ".join(map(str, paths[1:])))
        text = path.read_text(encoding="utf-8")
        header = read_header(path, text)
        _check_markers(path, text)
        try:
            compiled = env.get_template(path.name)
            tree = env.parse(text)
            # looked up from the context, less what the template sets itself (a {% set %}
            # inside an {% if %} still counts as looked up for jinja2.meta)
            used = jinja2.meta.find_undeclared_variables(tree) - {
                n.name for n in tree.find_all(jinja2.nodes.Name) if n.ctx in ("store", "param")}
        except jinja2.TemplateSyntaxError as exc:
            raise ConfigError(f"{path}:{exc.lineno}: template syntax error: {exc.message}") \
                from None
        declared = {*(header.get("variables") or ()), *(header.get("defaults") or {}),
                    *env.globals}
        unknown = sorted(used - declared)
        if unknown:
            raise ConfigError(
                f"{path}: uses {', '.join(unknown)}, which its header does not declare "
                f"(variables: {', '.join(header.get('variables') or ()) or 'none'}; "
                f"defaults: {', '.join(header.get('defaults') or {}) or 'none'}): a typo, or "
                "a variable to add to the header")
        return Template(
            name=name, version=header["version"], purpose=str(header["purpose"]).strip(),
            path=path, output=header.get("output", "text"),
            variables=tuple(header.get("variables") or ()),
            defaults=dict(header.get("defaults") or {}), source=str(header.get("source", "")),
            overrides=tuple(paths[1:]), jinja=compiled,
            allow_empty=bool(header.get("allow_empty", False)),
        )

    def _environment(self) -> jinja2.Environment:
        search = [str(d) for d in (*self.extra_dirs, BUILTIN_DIR)]
        loader = jinja2.ChoiceLoader([
            jinja2.PrefixLoader({"builtin": jinja2.FileSystemLoader(str(BUILTIN_DIR))}),
            jinja2.FileSystemLoader(search),
        ])
        env = jinja2.Environment(
            loader=loader, undefined=jinja2.StrictUndefined, autoescape=False,
            trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True,
            finalize=defuse_markers,
        )
        env.filters.update(date=format_date, datetime=format_datetime, weekday=format_weekday,
                           memories_json=memories_json)
        env.globals["fail"] = _fail
        return env


def load_templates(extra_dirs: Iterable[str | Path] | None = None) -> TemplateLibrary:
    """A library searching ``extra_dirs`` (in order) before the built-in templates."""
    return TemplateLibrary(extra_dirs or ())


def _as_datetime(value: Any) -> datetime | None:
    if value is None or isinstance(value, datetime):
        return value
    try:
        return datetime.fromisoformat(str(value))
    except ValueError:
        return None


def format_date(value: Any) -> str:
    """``8 May 2023`` (LoCoMo's gold answers use this form); None -> ``unknown date``."""
    moment = _as_datetime(value)
    if moment is None:
        return "unknown date" if value is None else str(value)
    return f"{moment.day} {moment:%B} {moment.year}"


def format_datetime(value: Any) -> str:
    """``8 May 2023, 13:56`` in the dataset's own clock (stored as UTC)."""
    moment = _as_datetime(value)
    if moment is None:
        return "unknown time" if value is None else str(value)
    return f"{format_date(moment)}, {moment:%H:%M}"


def format_weekday(value: Any) -> str:
    moment = _as_datetime(value)
    return f"{moment:%A}" if moment is not None else ""


def _fail(message: str) -> None:
    """Jinja global: stop rendering with ``message`` (e.g. an unknown question type)."""
    raise jinja2.TemplateRuntimeError(message)


def memories_json(memories: Any) -> str:
    """Memories as a JSON array, one object per memory (``rank``, ``date``, ``session``,
    ``text``): LongMemEval's structured presentation (§5.5), readable by small models.
    Plain ``json.dumps`` (not jinja's ``tojson``, which escapes ``<``, ``>``, ``&``, ``'``)."""
    import json

    rows = [{"rank": m.rank, "date": format_date(m.at), "session": m.session_id or None,
             "text": m.text} for m in memories]
    return json.dumps(rows, ensure_ascii=False, indent=1)


_MARKER_LIKE = re.compile(r"^\s*---(?P<role>[A-Za-z_]+)---\s*$", re.MULTILINE)


def _check_markers(path: Path, text: str) -> None:
    """A line shaped like a role marker must be one (``---sytem---`` would otherwise render
    as text before the first marker, an error only when a prompt is rendered)."""
    for match in _MARKER_LIKE.finditer(text):
        role = match.group("role")
        if role not in ("system", "user", "assistant"):
            line = text.count("\n", 0, match.start()) + 1
            close = did_you_mean(f"---{role}---", ["---system---", "---user---",
                                                    "---assistant---"])
            raise ConfigError(f"{path}:{line}: unknown role marker ---{role}---"
                              f"{f' ({close})' if close else ''}; the markers are "
                              "---system---, ---user--- and ---assistant---")
