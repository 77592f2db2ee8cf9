"""Prompt templates: Jinja2 files with a name, a version and a purpose.

>>> from memlab.prompts import templates
>>> r = templates.render("answer_short", question="Where?", memories=[])
>>> r.messages[0]["role"], r.template, len(r.sha256)
('system', 'answer_short', 64)

``templates`` holds the built-ins; ``load_templates(extra_dirs=[...])`` (or
``get_template(name, template_dirs=[...])``) adds user folders searched first, so a
user file with a built-in's name replaces it (and says so). Each rendering returns
chat messages plus the template name, version and the sha256 of the messages, which
the harness records with every answer. ``Template.parse`` reads the model's answer
with the parser the template names (plain text, a marked final answer, a judge label,
or JSON). See ``memlab/prompts/template.py`` for the file format.
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import lru_cache
from pathlib import Path
from typing import Any

from memlab.errors import ConfigError
from memlab.prompts.library import BUILTIN_DIR, TemplateLibrary, load_templates
from memlab.prompts.parsing import (
    PARSERS,
    extract_json,
    list_schema,
    parse_correct_wrong,
    parse_final_answer,
    parse_verdict,
    parse_yes_no,
    record_schema,
    strip_thinking,
    turn_numbers,
)
from memlab.prompts.template import MemoryRow, Rendered, Template

#: The built-in templates (no user folders).
templates = TemplateLibrary()
#: Same object under the name every component kind uses for ``ls``.
registry = templates


@lru_cache(maxsize=32)
def _library(dirs: tuple[str, ...]) -> TemplateLibrary:
    return TemplateLibrary(dirs) if dirs else templates


def get_template(name: str, template_dirs: Iterable[str | Path] | None = None) -> Template:
    """The template ``name``, looking in ``template_dirs`` before the built-ins."""
    return _library(tuple(str(d) for d in template_dirs or ())).get(name)


def check_template(what: str, name: str,
                   template_dirs: Iterable[str | Path] | None = None) -> None:
    """Raise a ConfigError naming ``what`` (``keys: template``) unless ``name`` is a template
    in ``template_dirs`` or the built-ins."""
    try:
        get_template(name, template_dirs)
    except ConfigError as exc:
        raise ConfigError(f"{what}: {exc}") from None


def render(name: str, template_dirs: Iterable[str | Path] | None = None,
           **variables: Any) -> Rendered:
    return get_template(name, template_dirs).render(**variables)


__all__ = [
    "BUILTIN_DIR",
    "PARSERS",
    "MemoryRow",
    "Rendered",
    "Template",
    "TemplateLibrary",
    "check_template",
    "extract_json",
    "get_template",
    "list_schema",
    "load_templates",
    "parse_correct_wrong",
    "parse_final_answer",
    "parse_verdict",
    "parse_yes_no",
    "record_schema",
    "registry",
    "render",
    "strip_thinking",
    "templates",
    "turn_numbers",
]
