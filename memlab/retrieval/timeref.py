"""The time a question refers to, read relative to when it is asked (``asked_at``).

"What did I buy last Tuesday?", "in May", "two weeks ago", "on 3 June 2023": a maintained
date parser (``dateparser``, English) finds the expression and resolves it against the
question's ``asked_at``; its period (day, week, month, year) sets the span's width.
Two kinds of phrase are read before the parser sees the question: a rolling window ("in
the past two weeks", "over the last 3 months", "in the last month": from that long
before ``asked_at`` up to it, where the parser would pick one calendar week or month),
and a rate or duration ("three days a week", "once per month", "for a week"), which names
no time at all (the parser reads "a week" as a week ago). "in a week ago" loses its "in"
(the parser reads it as a week from now). A date after "before" / "prior to" / "until" is
where the span ends (from far back: "before May" is everything before May), after "since"
where it starts and after "after" where it starts once that date is over, all up to
``asked_at`` ("before today" is then the whole past, which favours nothing). A
cheap cue pattern runs first, so the parser (1-3 ms a question) only sees questions
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


_COUNTS = {"a": 1, "an": 1, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6,
           "seven": 7, "eight": 8, "nine": 9, "ten": 10, "eleven": 11, "twelve": 12,
           "couple of": 2, "few": 3, "several": 3}
#: a count of days, weeks, ...: a digit string or one of the words above
_COUNT = rf"\d{{1,3}}|{'|'.join(sorted(_COUNTS, key=len, reverse=True))}"
#: "two weeks", "3 days": an amount of time
_AMOUNT = rf"(?:{_COUNT})\s+(?:days?|weeks?|months?|years?)"
#: "the past two weeks", "the last month", "past 3 days": a window ending at asked_at
#: ("last month" without "the" or a count stays the calendar month, read by the parser;
#: "the last week of August" is left to the parser as "of August": the month).
_ROLLING = re.compile(
    r"\b(?:(?P<the>the)\s+)?(?:past|last|previous)\s+"
    rf"(?:(?P<n>{_COUNT})\s+)?"
    r"(?P<unit>days?|weeks?|months?|years?)\b(?P<of>\s+of\b)?", re.IGNORECASE)
#: "days a week", "once per month", "for a week": a rate or a duration, not a time
_RATE = re.compile(r"\b(?:a|an|per|every|each|for\s+a)\s+(?:day|week|month|year)\b(?!\s+ago)",
                   re.IGNORECASE)
_UNIT_DAYS = {"day": 1, "week": 7, "month": 30, "year": 365}
#: "in a week ago", "in 3 days ago": the "in" (the parser would read a time to come)
_IN_AGO = re.compile(rf"\bin\s+(?={_AMOUNT}\s+ago\b)", re.IGNORECASE)
#: A word that turns a date into one end of an open span ("before May", "since March");
#: the parser keeps it in its match or leaves it just in front.
_OPENER = r"(?P<word>before|prior\s+to|until|till|after|since)\s+"
_DIRECTION = re.compile(rf"\b{_OPENER}$", re.IGNORECASE)
_LEADING = re.compile(_OPENER, re.IGNORECASE)
#: An amount just before the direction word: an offset, not an open span
_OFFSET = re.compile(rf"\b{_AMOUNT}\s+$", re.IGNORECASE)
#: Where a "before" span starts: earlier than any conversation (and safe to widen)
EARLIEST = datetime(1900, 1, 1)


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
    spans: list[TimeSpan] = []
    rest = _ROLLING.sub(lambda m: _read_rolling(m, base, spans),
                        _IN_AGO.sub(_blank, _RATE.sub(_blank, question)))
    # add_period: the period dateparser found with each date (parsing each found
    # expression again for it cost as much as the whole search)
    found = search_dates(rest, languages=["en"], settings=settings, add_period=True) or []
    cursor = 0
    for text, when, period in found:
        at = rest.find(text, cursor)
        cursor = cursor if at < 0 else at + len(text)
        if when is None or not _ACCEPT.search(text):
            continue
        span = _open(_span(when, period or "day", text), _direction(rest, at, text), base)
        end = min(span.end, base + timedelta(microseconds=1))
        if span.start < end:
            spans.append(TimeSpan(span.start.replace(tzinfo=UTC), end.replace(tzinfo=UTC),
                                  text))
    return tuple(spans)


def _read_rolling(match: re.Match[str], base: datetime, spans: list[TimeSpan]) -> str:
    """Read a rolling phrase: a window ending at ``base`` is appended to ``spans`` and
    hidden from the parser; of "the last week of" only "of" is left (so "of August" gives
    the month), and a calendar "last week" is left as is. Returns what the parser sees."""
    if match["of"]:
        return _blank(match)[:-2] + "of"
    count = match["n"]
    if count is None and match["the"] is None:
        return match[0]
    n = 1 if count is None else int(count) if count.isdigit() else _COUNTS[count.lower()]
    days = n * _UNIT_DAYS[match["unit"].lower().rstrip("s")]
    start = (base - timedelta(days=days)).replace(hour=0, minute=0, second=0, microsecond=0)
    spans.append(TimeSpan(start.replace(tzinfo=UTC),
                          (base + timedelta(microseconds=1)).replace(tzinfo=UTC), match[0]))
    return _blank(match)


def _direction(rest: str, at: int, text: str) -> str | None:
    """The direction word of the date ``text`` found at ``at`` in ``rest`` (in the match or
    just before it), lower case with single spaces; None if there is none, or if it follows
    an offset ("two weeks before August 11" is a date, not everything before it)."""
    found = _LEADING.match(text)
    head = rest[:at] if at >= 0 else ""
    if found is None:
        found = _DIRECTION.search(head)
        head = head[:found.start()] if found is not None else head
    if found is None or _OFFSET.search(head):
        return None
    return " ".join(found["word"].lower().split())


def _open(span: TimeSpan, direction: str | None, base: datetime) -> TimeSpan:
    """``span`` opened by its direction word: the time before it, since it or after it
    (up to ``base``, which the caller clips to)."""
    now = base + timedelta(microseconds=1)
    if direction in ("before", "prior to"):
        return TimeSpan(EARLIEST, span.start, span.text)
    if direction in ("until", "till"):
        return TimeSpan(EARLIEST, span.end, span.text)
    if direction == "since":
        return TimeSpan(span.start, now, span.text)
    if direction == "after":
        return TimeSpan(span.end, now, span.text)
    return span


def _blank(match: re.Match[str]) -> str:
    """A matched phrase replaced by as many spaces (so the parser skips it)."""
    return " " * len(match[0])


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
