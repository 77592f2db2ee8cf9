"""The time a question refers to, read relative to when it is asked (``asked_at``).

"What did I buy last Tuesday?", "in May", "two weeks ago", "on 3 June 2023": a maintained
date parser (``dateparser``, English) finds the expression and resolves it against the
question's ``asked_at``; its period (day, week, month, year) sets the span's width. A
cheap cue pattern runs first, so the parser (tens of milliseconds) only sees questions
that mention a date-like word, and results are memoised per (question, asked_at). Spans
never end after ``asked_at``: the past is all a memory can know.
"""

from __future__ import annotations

import re
from calendar import monthrange
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import NamedTuple

_MONTHS = ("january|february|march|april|june|july|august|september|october|november|"
           "december|jan|feb|mar|apr|jun|jul|aug|sep|sept|oct|nov|dec")
_DAYS = "monday|tuesday|wednesday|thursday|friday|saturday|sunday"
#: Words that make a question worth parsing (plus "May" written as a month, below).
CUES = re.compile(
    rf"\b(\d{{1,4}}|{_MONTHS}|{_DAYS}|ago|yesterday|today|tonight|last|past|previous|"
    r"this (?:week|month|year|morning|weekend)|weekend|weeks?|months?|years?|days?)\b",
    re.IGNORECASE)
_MAY = re.compile(r"(?<=[a-z,] )May\b|\bMay \d")
#: What an accepted expression must contain: a month, weekday, year or relative word
#: (dateparser also reads "a", "now", "sat", and a bare ordinal like "18th" as a day).
_ACCEPT = re.compile(rf"(\b\d{{4}}\b|\b(?:{_MONTHS}|may|{_DAYS}|ago|yesterday|today|last|"
                     r"weeks?|months?|years?)\b)", re.IGNORECASE)


class TimeSpan(NamedTuple):
    """A half-open span of dataset time ``[start, end)`` and the text it came from."""

    start: datetime
    end: datetime
    text: str


def time_spans(question: str, asked_at: datetime | None) -> tuple[TimeSpan, ...]:
    """The spans of time ``question`` refers to (none if it names no time)."""
    if asked_at is None or not (CUES.search(question) or _MAY.search(question)):
        return ()
    return _parse(question, asked_at)


@lru_cache(maxsize=1)
def warm_up() -> None:
    """Import dateparser and load its English data once (about a second), so that cost
    falls on indexing, not on the first question that names a date."""
    _parse.__wrapped__("What happened on 1 May 2023, two weeks ago?",
                       datetime(2024, 1, 1, tzinfo=UTC))


@lru_cache(maxsize=8192)
def _parse(question: str, asked_at: datetime) -> tuple[TimeSpan, ...]:
    from dateparser.search import search_dates

    base = asked_at.astimezone(UTC).replace(tzinfo=None)
    settings = {"RELATIVE_BASE": base, "PREFER_DATES_FROM": "past",
                "RETURN_AS_TIMEZONE_AWARE": False}
    found = search_dates(question, languages=["en"], settings=settings) or []
    spans = []
    for text, _ in found:
        if not _ACCEPT.search(text):
            continue
        when, period = _date_data(text, base)
        if when is None:
            continue
        span = _span(when, period, text)
        end = min(span.end, base + timedelta(microseconds=1))
        if span.start < end:
            spans.append(TimeSpan(span.start.replace(tzinfo=UTC), end.replace(tzinfo=UTC),
                                  text))
    return tuple(spans)


@lru_cache(maxsize=8192)
def _date_data(text: str, base: datetime) -> tuple[datetime | None, str]:
    """dateparser's date and period of an expression found in a question, relative to
    ``base``; memoised, since questions asked at one time repeat expressions ("2023",
    "last year")."""
    from dateparser import DateDataParser

    settings = {"RELATIVE_BASE": base, "PREFER_DATES_FROM": "past",
                "RETURN_AS_TIMEZONE_AWARE": False}
    data = DateDataParser(languages=["en"], settings=settings).get_date_data(text)
    return data.date_obj, data.period or "day"


def _span(when: datetime, period: str, text: str) -> TimeSpan:
    """The calendar span of ``period`` that holds ``when``."""
    day = when.replace(hour=0, minute=0, second=0, microsecond=0, tzinfo=None)
    if period == "year":
        return TimeSpan(day.replace(month=1, day=1), day.replace(year=day.year + 1, month=1,
                                                                 day=1), text)
    if period == "month":
        start = day.replace(day=1)
        return TimeSpan(start, start + timedelta(days=monthrange(day.year, day.month)[1]),
                        text)
    if period == "week":
        start = day - timedelta(days=day.weekday())
        return TimeSpan(start, start + timedelta(days=7), text)
    return TimeSpan(day, day + timedelta(days=1), text)
