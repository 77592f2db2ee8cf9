"""What every component's output must be, checked as a run uses it.

A chunker or strategy of one's own (or a built-in one with a bug) can return something
that the metrics would score without a word: two units under one id (one of them is
never found), a unit dated before the turns it was made from (visible to questions asked
before they were said), a hit list with the same unit twice, NaN scores, more hits than
asked for, or a unit from after the question (future leakage: recall that no live memory
could have). These checks run on every ingest and every search; a broken contract is a
:class:`ContractError` naming the component, the session or probe, and what was wrong.
A chunker's errors stop the conversation (its memory would be wrong for every probe); a
search's error is the probe's error (recorded, excluded from the metrics, counted, and
stopping the run past ``fail_on_error``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Mapping, Sequence
from datetime import datetime
from typing import Any

from memlab.chunkers.base import MemoryUnit
from memlab.errors import MemlabError


class ContractError(MemlabError, ValueError):
    """A component returned what its kind must not return."""


def check_units(units: Any, who: str, session_id: str, known: Mapping[str, datetime],
                seen: Collection[str]) -> None:
    """``units`` a chunker made from session ``session_id``: a list of MemoryUnit with
    non-empty ids new to the memory (``seen``) and to each other, text, and source turns
    the memory has read (``known``: turn id -> when it was said), none dated before its
    latest source turn."""
    if not isinstance(units, list | tuple):
        raise ContractError(f"{who} returned {type(units).__name__} for session "
                            f"{session_id!r}; a chunker returns a list of MemoryUnit")
    ids: set[str] = set()
    for n, unit in enumerate(units):
        where = f"{who}, session {session_id!r}, unit {n}"
        if not isinstance(unit, MemoryUnit):
            raise ContractError(f"{where}: a {type(unit).__name__}, not a MemoryUnit")
        if not isinstance(unit.id, str) or not unit.id.strip():
            raise ContractError(f"{where}: empty id {unit.id!r}")
        if unit.id in ids or unit.id in seen:
            raise ContractError(f"{where}: id {unit.id!r} is already in the memory (ids "
                                "must be unique: a repeated one hides a unit)")
        ids.add(unit.id)
        if not isinstance(unit.text, str):
            raise ContractError(f"{where} ({unit.id!r}): text is a "
                                f"{type(unit.text).__name__}, not a str")
        if not isinstance(unit.at, datetime):
            raise ContractError(f"{where} ({unit.id!r}): at is {unit.at!r}, not a datetime")
        unknown = [t for t in unit.source_turn_ids if t not in known]
        if unknown:
            raise ContractError(f"{where} ({unit.id!r}): source turn(s) "
                                f"{', '.join(map(repr, unknown[:3]))} are not turns the "
                                "memory has read")
        said = [known[t] for t in unit.source_turn_ids]
        if said and unit.at < max(said):
            raise ContractError(
                f"{where} ({unit.id!r}): dated {unit.at.isoformat()}, before its source "
                f"turn said at {max(said).isoformat()} (a question asked in between would "
                "see it: future leakage)")


def check_hits(hits: Any, who: str | Callable[[], str], depth: int,
               as_of: datetime | None) -> None:
    """``hits`` a search for ``depth`` results as of ``as_of`` returned: a list of Hit
    (a unit and a finite score), each unit once, at most ``depth``, none dated after
    ``as_of``. ``who`` names the searcher in the error; a callable is only called then
    (this runs on every probe)."""
    try:
        _check_hits(hits, depth, as_of)
    except ContractError as exc:
        raise ContractError(f"{who() if callable(who) else who}{exc}") from None


def _check_hits(hits: Any, depth: int, as_of: datetime | None) -> None:
    """:func:`check_hits` without the searcher's name (messages start after it)."""
    if not isinstance(hits, list | tuple):
        raise ContractError(f" returned {type(hits).__name__}; a search returns a "
                            "list of Hit(unit, score)")
    if len(hits) > depth:
        raise ContractError(f" returned {len(hits)} hits for k={depth} (hits past k "
                            "would be scored as if asked for)")
    ids: set[str] = set()
    future = []
    for n, hit in enumerate(hits):
        unit = getattr(hit, "unit", None)
        score = getattr(hit, "score", None)
        if not isinstance(unit, MemoryUnit):
            raise ContractError(f": hit {n} is a {type(hit).__name__}; a search returns "
                                "Hit(unit, score) with a MemoryUnit")
        if isinstance(score, bool) or not isinstance(score, int | float) \
                or not math.isfinite(score):
            raise ContractError(f": hit {n} ({unit.id!r}) has score {score!r}; scores "
                                "are finite numbers")
        if unit.id in ids:
            raise ContractError(f": unit {unit.id!r} returned twice (hit {n})")
        ids.add(unit.id)
        if as_of is not None and unit.at > as_of:
            future.append(unit)
    if future:
        raise ContractError(
            f" returned {len(future)} unit(s) dated after the question "
            f"(as_of {as_of.isoformat() if as_of else None}; first {future[0].id!r} at "
            f"{future[0].at.isoformat()}): future leakage")


def check_score(name: str, value: Any) -> float | None:
    """A scorer's value for one answer: a finite number (a bool counts as 0/1) or None
    (not applicable); anything else is the probe's error, not a crash of the summary."""
    if value is None:
        return None
    if isinstance(value, bool):
        return float(value)
    if not isinstance(value, int | float) or not math.isfinite(value):
        raise ContractError(f"scorer '{name}' returned {value!r}; a scorer returns a number "
                            "(or None where it does not apply)")
    return value


def turn_times(turns: Sequence[Any]) -> dict[str, datetime]:
    """``{turn id: when it was said}`` of dataset turns."""
    return {t.id: t.at for t in turns}
