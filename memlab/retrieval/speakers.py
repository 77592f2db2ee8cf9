"""Who said a line, and which speaker a question names.

Turn, window and session units hold one ``Speaker: text`` line per turn (the chunkers'
convention). A question *names* a speaker by their name or its first word as a whole word,
any case ("What books has Melanie read?", "Caroline's plans"), or by one of their
``aliases`` (``{user: [I, me, my]}`` makes first-person questions about the user). Nothing
here knows a dataset: speakers are read from the lines indexed.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence

_SPEAKER = re.compile(r"^([^:\n]{1,40}): ")


def line_speaker(line: str) -> str | None:
    """The speaker of a ``Speaker: text`` line (None if it has no such prefix)."""
    match = _SPEAKER.match(line)
    return match.group(1) if match else None


def check_aliases(owner: str, aliases: object) -> None:
    """Raise a ConfigError unless ``aliases`` is None or maps speakers to lists of words."""
    from memlab.errors import ConfigError

    if aliases is not None and (not isinstance(aliases, Mapping) or any(
            isinstance(words, str) or not isinstance(words, Iterable)
            or not all(isinstance(w, str) for w in words) for words in aliases.values())):
        raise ConfigError(f"{owner}: aliases must map a speaker to a list of words, e.g. "
                          f"{{user: [I, me, my]}}; got {aliases!r}")


class SpeakerNames:
    """The speakers of ``Speaker: text`` lines (:func:`line_speaker`), and which of them a
    question names."""

    def __init__(self, aliases: Mapping[str, Sequence[str]] | None = None) -> None:
        self.aliases = dict(aliases or {})
        self.patterns: dict[str, re.Pattern[str]] = {}

    def add(self, speakers: Iterable[str | None]) -> None:
        """Learn ``speakers`` (None, a line with no speaker, is skipped)."""
        for speaker in speakers:
            if speaker is not None and speaker not in self.patterns:
                self.patterns[speaker] = _name_pattern(speaker, self.aliases.get(speaker, ()))

    def named(self, query: str) -> list[str]:
        """The known speakers ``query`` names, in the order they were first seen."""
        return [s for s, pattern in self.patterns.items() if pattern.search(query)]


def _name_pattern(speaker: str, aliases: Sequence[str]) -> re.Pattern[str]:
    """Whole-word, any-case match of a speaker's name, its first word or an alias."""
    words = {speaker, speaker.split()[0], *aliases}
    alternatives = "|".join(re.escape(w) for w in sorted(words, key=len, reverse=True))
    return re.compile(rf"(?<!\w)(?:{alternatives})(?!\w)", re.IGNORECASE)
