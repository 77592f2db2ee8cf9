"""Error analysis of one run: which probes failed, what was retrieved, and when it was said.

Everything starts from a run's item rows (``RunResult.items()`` or
``memlab.eval.items.read_items(run_dir / "items.jsonl")``) and the Dataset the run replayed
(item rows keep unit ids and evidence ids, not texts or turn times). A probe *fails* when
its metric is below a threshold (``turn.recall_any@10 < 1``: no evidence turn among the
10 units shown); probes the metric does not apply to (abstention, no evidence) and
errored probes are excluded and counted, never scored as failures. Failure rates carry
the same percentile-bootstrap 95 % CIs as ``metrics.json``.
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from memlab.data.schema import Dataset, Turn
from memlab.errors import ConfigError
from memlab.files import read_yaml
from memlab.metrics.retrieval import coverage
from memlab.metrics.stats import summarize, value

#: Edges (days) of the evidence-age bins: asked_at minus the evidence turn's time.
AGE_EDGES_DAYS: tuple[float, ...] = (0, 1, 7, 30, 90, 180, 365, math.inf)

_DAY_SECONDS = 86_400.0


def age_bin_labels(edges: Sequence[float] = AGE_EDGES_DAYS) -> list[str]:
    """Readable labels of the bins ``[edges[i], edges[i+1])``: ``"<1 d"``, ``"1–7 d"``..."""
    labels = []
    for low, high in itertools.pairwise(edges):
        if low == 0:
            labels.append(f"<{high:g} d")
        elif math.isinf(high):
            labels.append(f"≥{low:g} d")
        else:
            labels.append(f"{low:g}–{high:g} d")
    return labels


def age_bin(days: float | None, edges: Sequence[float] = AGE_EDGES_DAYS) -> str | None:
    """The label of the bin holding ``days`` (None stays None)."""
    if days is None or math.isnan(days):
        return None
    labels = age_bin_labels(edges)
    for label, high in zip(labels, edges[1:], strict=True):
        if days < high:
            return label
    return labels[-1]


def turn_index(dataset: Dataset) -> dict[tuple[str, str], Turn]:
    """``(conversation id, turn id) -> Turn`` for every turn of the dataset."""
    return {(c.id, t.id): t for c in dataset for t in c.turns()}


def evidence_ages(row: dict[str, Any], turns: dict[tuple[str, str], Turn]
                  ) -> tuple[float | None, float | None]:
    """Days from the newest and from the oldest evidence turn to the question (asked_at)."""
    asked = datetime.fromisoformat(row["asked_at"])
    ages = [(asked - turns[key].at).total_seconds() / _DAY_SECONDS
            for key in ((row["conversation_id"], t) for t in row["evidence_turn_ids"])
            if key in turns]
    if not ages:
        return None, None
    return min(ages), max(ages)


def probe_table(items: Sequence[dict[str, Any]], dataset: Dataset,
                metric: str = "turn.recall_any@10", *, threshold: float = 1.0,
                age_of: str = "newest") -> Any:
    """One row per probe: its ``metric``, whether it failed, and how old its evidence was.

    ``failed`` is ``metric < threshold`` (None where the metric does not apply or the
    probe errored). ``evidence_age_days`` is asked_at minus the ``newest`` (or ``oldest``)
    evidence turn's time; ``age_bin`` bins it by :data:`AGE_EDGES_DAYS`.
    """
    import pandas as pd

    if age_of not in ("newest", "oldest"):
        raise ValueError(f"age_of must be 'newest' or 'oldest', got {age_of!r}")
    turns = turn_index(dataset)
    rows = []
    for row in items:
        newest, oldest = evidence_ages(row, turns)
        score = None if row.get("error") else value(row, metric)
        age = newest if age_of == "newest" else oldest
        rows.append({
            "conversation_id": row["conversation_id"], "probe_id": row["probe_id"],
            "category": row["category"], "question": row["question"], "gold": row["gold"],
            "answer": row.get("answer"), metric: score,
            "failed": None if score is None else score < threshold,
            "n_evidence_turns": len(row["evidence_turn_ids"]),
            "evidence_age_days": age, "evidence_span_days": _span(newest, oldest),
            "age_bin": age_bin(age), "error": row.get("error"),
        })
    frame = pd.DataFrame(rows)
    frame["age_bin"] = pd.Categorical(frame["age_bin"], categories=age_bin_labels(),
                                      ordered=True)
    return frame


def _span(newest: float | None, oldest: float | None) -> float | None:
    return None if newest is None or oldest is None else oldest - newest


def failure_rates(table: Any, by: str = "category", *, seed: int = 0) -> Any:
    """Failure rate per value of ``by`` (first row: ``all``) with a 95 % bootstrap CI.

    ``n`` counts the probes with a verdict, ``excluded`` those without one (metric not
    applicable or errored). A probe with no value of ``by`` (no evidence time, when
    grouping by age) counts in ``all`` only. Groups keep a categorical column's order
    (age bins run young to old), else sort by name.
    """
    import pandas as pd

    column = table[by]
    if isinstance(column.dtype, pd.CategoricalDtype):
        order = list(column.cat.categories)
    else:
        order = sorted(column.dropna().unique(), key=str)
    groups = [("all", table)] + [(name, table[column == name]) for name in order]
    out = []
    for name, part in groups:
        verdicts = [{"failed": None if pd.isna(f) else float(f)} for f in part["failed"]]
        stats = summarize(verdicts, "failed", seed=seed)
        failed = int(sum(v["failed"] or 0 for v in verdicts))
        out.append({by: name, "n": stats.n, "failed": failed, "rate": stats.mean,
                    "ci_low": stats.ci_low, "ci_high": stats.ci_high,
                    "excluded": stats.n_excluded})
    return pd.DataFrame(out)


def retrieved_context(row: dict[str, Any], dataset: Dataset, top: int | None = None) -> Any:
    """What the memory showed for one probe, next to the gold evidence.

    One line per unit shown (rank, score, session, whether it covers an evidence turn,
    days before the question, the text of its source turns; the first ``top`` only, if
    given), then one line per evidence turn that no shown unit covers (``rank`` empty,
    ``evidence`` "missed").
    """
    import pandas as pd

    turns = turn_index(dataset)
    conversation = row["conversation_id"]
    evidence = set(row["evidence_turn_ids"])
    asked = datetime.fromisoformat(row["asked_at"])
    lines, covered = [], set()
    for rank, hit in enumerate(row.get("retrieved", [])[:top], start=1):
        sources = [t for t in hit["source_turn_ids"] if (conversation, t) in turns]
        covered.update(evidence.intersection(sources))
        lines.append({
            "rank": rank, "score": hit["score"], "unit": hit["id"],
            "session": hit["session_id"],
            "evidence": "yes" if evidence.intersection(sources) else "",
            "days_before": _days(asked, datetime.fromisoformat(hit["at"])),
            "tokens": hit.get("tokens"),
            "text": _text([turns[(conversation, t)] for t in sources]),
        })
    for turn_id in row["evidence_turn_ids"]:
        turn = turns.get((conversation, turn_id))
        if turn_id in covered or turn is None:
            continue
        lines.append({"rank": None, "score": None, "unit": turn_id,
                      "session": turn.session_id, "evidence": "missed",
                      "days_before": _days(asked, turn.at), "tokens": None,
                      "text": _text([turn])})
    frame = pd.DataFrame(lines, columns=["rank", "score", "unit", "session", "evidence",
                                         "days_before", "tokens", "text"])
    return frame.astype({"rank": "Int64"})


_RANKED = re.compile(r"^(turn|session)\.(recall_all|recall_any|budget_evidence_recall|"
                     r"budget_recall_any)@(\d+)$")

#: How far a missed probe's evidence lies, worst first (see :func:`miss_table`).
MISS_KINDS = ("not ranked", "deeper than 2k", "within 2k",
              "more evidence than k", "ranked, past the token budget")


def evidence_ranks(row: dict[str, Any], level: str = "session") -> dict[str, int | None]:
    """Each evidence item's rank in a probe's ranking, None when not ranked.

    At session level the rank counts the distinct sessions the units cover, in order
    (LongMemEval's widened k: ``session.recall_all@5`` asks for every evidence session
    within the first five); at turn level it is the position of the first unit covering
    the turn (``turn.*@k`` counts units). Rows record these ranks over the whole search
    depth (``evidence_ranks``, the ranking the metrics read); rows of older runs have
    only their stored top ``k`` units, so there None means "not in the stored list".
    """
    if level not in ("turn", "session"):
        raise ConfigError(f"evidence ranks are at level 'turn' or 'session', not {level!r}")
    wanted = row["evidence_session_ids"] if level == "session" else row["evidence_turn_ids"]
    recorded = (row.get("evidence_ranks") or {}).get(level)
    if recorded is not None:
        return {item: recorded.get(item) for item in wanted}
    seen: dict[str, int] = {}
    for position, hit in enumerate(row.get("retrieved", []), start=1):
        cover = coverage(hit)
        if level == "turn":
            for turn in cover.turns:
                seen.setdefault(turn, position)
            continue
        for session in sorted(cover.sessions):
            seen.setdefault(session, len(seen) + 1)
    return {item: seen.get(item) for item in wanted}


def miss_table(items: Sequence[dict[str, Any]], metric: str = "session.recall_all@5",
               dataset: Dataset | None = None) -> Any:
    """One row per probe that misses a ranked recall metric, with where its evidence lies.

    ``metric`` is ``LEVEL.recall_all@K`` or ``LEVEL.recall_any@K``, or a token-budget
    metric, ``LEVEL.budget_evidence_recall@B`` or ``LEVEL.budget_recall_any@B`` (a miss:
    below 1). ``ranks`` are the evidence items' ranks (:func:`evidence_ranks`, best
    first, None last); ``kind`` says how far the miss is, from the rank that decides it
    (the worst evidence rank for recall_all and budget_evidence_recall, the best for the
    ``any`` metrics): ``more evidence than k`` (recall_all with more evidence items than
    k: no top k holds them), ``within 2k``, ``deeper than 2k``, ``not ranked`` (not
    within the search depth; for rows of older runs, not in the stored top k), or for a
    budget metric ``ranked, past the token budget``. Probes the metric
    does not apply to, and errored ones, are left out.

    Given the ``dataset`` the run replayed, each miss also says when: ``asked_at``, the
    spans of time the question names as ``time_aware`` reads them (``named``: ``(first
    day, last day)`` pairs, relative to ``asked_at``), and its evidence items by time
    (``evidence``: ``(time, rank, inside a named span)``, oldest first; inside means
    within the span itself, without ``time_aware``'s ``slack_days``) - what shows
    whether a time filter or boost could have found them.
    """
    import pandas as pd

    match = _RANKED.match(metric)
    scored = {n for row in items for n in (row.get("metrics") or {})}
    if match is None or metric not in scored:
        cuts: dict[str, set[int]] = {}
        for name in scored:
            if _RANKED.match(name):
                family, cut = name.rsplit("@", 1)
                cuts.setdefault(family, set()).add(int(cut))
        readable = [f"{family}@{'/'.join(map(str, sorted(cuts[family])))}"
                    for family in sorted(cuts)]
        has = f"; this run has {', '.join(readable)}" if readable else ""
        if match is not None:
            raise ConfigError(f"this run did not score {metric!r}{has}")
        raise ConfigError(f"misses reads evidence ranks: the metric must be LEVEL.recall_all@K, "
                          f"LEVEL.recall_any@K, LEVEL.budget_evidence_recall@B or "
                          f"LEVEL.budget_recall_any@B (LEVEL turn or session), not {metric!r}"
                          + has)
    level, kind, k = match.group(1), match.group(2), int(match.group(3))
    budget = kind.startswith("budget_")
    worst_decides = kind in ("recall_all", "budget_evidence_recall")
    times = _evidence_times(dataset, level) if dataset is not None else {}
    rows = []
    for row in items:
        score = None if row.get("error") else value(row, metric)
        if score is None or score >= 1.0:
            continue
        ranks = evidence_ranks(row, level)
        found = sorted(r for r in ranks.values() if r is not None)
        ordered: list[int | None] = [*found, *([None] * (len(ranks) - len(found)))]
        decisive = ordered[-1] if worst_decides else ordered[0]
        if kind == "recall_all" and len(ranks) > k:
            where = MISS_KINDS[3]
        elif decisive is None or budget:
            where = MISS_KINDS[0] if decisive is None else MISS_KINDS[4]
        else:
            where = MISS_KINDS[2] if decisive <= 2 * k else MISS_KINDS[1]
        rows.append({"probe_id": row["probe_id"], "category": row["category"],
                     "question": row["question"], "n_evidence": len(ranks),
                     "ranks": ordered, "kind": where, "stored": len(row.get("retrieved", []))})
        if dataset is not None:
            rows[-1].update(_when(row, ranks, level, times))
    columns = ["probe_id", "category", "question", "n_evidence", "ranks", "kind", "stored"]
    return pd.DataFrame(rows, columns=columns + (["asked_at", "named", "evidence"]
                                                 if dataset is not None else []))


def _evidence_times(dataset: Dataset, level: str) -> dict[tuple[str, str], datetime]:
    """``(conversation id, session or turn id) -> when it was said`` for the dataset."""
    if level == "turn":
        return {key: turn.at for key, turn in turn_index(dataset).items()}
    return {(c.id, s.id): s.started_at for c in dataset for s in c.sessions}


def _when(row: dict[str, Any], ranks: dict[str, int | None], level: str,
          times: dict[tuple[str, str], datetime]) -> dict[str, Any]:
    """A missed probe's asked_at, the spans its question names and its dated evidence."""
    from memlab.retrieval.timeref import time_spans

    asked = datetime.fromisoformat(row["asked_at"])
    spans = time_spans(row["question"], asked)
    dated = []
    for item, rank in ranks.items():
        at = times.get((row["conversation_id"], item))
        if at is None:
            raise ConfigError(f"misses: {level} {item!r} of probe {row['probe_id']!r} "
                              f"(conversation {row['conversation_id']!r}) is not in the "
                              "dataset given: is it the dataset the run replayed?")
        dated.append((at, rank, any(s.start <= at < s.end for s in spans)))
    last = timedelta(microseconds=1)
    return {"asked_at": asked,
            "named": [(s.start.date(), (s.end - last).date()) for s in spans],
            "evidence": sorted(dated, key=lambda d: d[0])}


def when_line(row: Any) -> str:
    """A :func:`miss_table` row made with a dataset, in one line: when it was asked, the
    days its question names, its evidence by date with ranks (``*``: inside a named span)."""
    from memlab.retrieval.timeref import EARLIEST

    named = ", ".join(f"{first:%Y-%m-%d}" if first == last else
                      f"..{last:%Y-%m-%d}" if first <= EARLIEST.date() else
                      f"{first:%Y-%m-%d}..{last:%Y-%m-%d}" for first, last in row.named)
    evidence = ", ".join(f"{at:%Y-%m-%d %a} #{'-' if rank is None else rank}"
                         f"{'*' if inside else ''}" for at, rank, inside in row.evidence)
    return (f"asked {row.asked_at:%Y-%m-%d %a}; names {named or 'no time'}; "
            f"evidence {evidence}")


def run_dataset(run_dir: str | Path) -> Dataset:
    """The dataset a run replayed, loaded as its ``config.resolved.yaml`` says."""

    from memlab.eval.config import load_config

    path = Path(run_dir) / "config.resolved.yaml"
    if not path.is_file():
        raise ConfigError(f"{run_dir}: not a run directory (no config.resolved.yaml)")
    return load_config(read_yaml(path)).dataset.load()


def _days(asked: datetime, at: datetime) -> float:
    return round((asked - at).total_seconds() / _DAY_SECONDS, 1)


def _text(turns: Sequence[Turn]) -> str:
    return " / ".join(f"{t.speaker}: {t.full_text}" for t in turns)


def memory_tokens(items: Sequence[dict[str, Any]]) -> list[int]:
    """Per probe, the exact Qwen tokens of the units shown (the run's top ``k``).

    This is what a retrieval-only run would put in front of the model; answered runs
    also record ``tokens.memory`` (after the memory-token budget).
    """
    return [sum(int(h.get("tokens") or 0) for h in row.get("retrieved", []))
            for row in items if not row.get("error")]


def mean_memory_tokens(run_dir: str | Path) -> float | None:
    """Mean of :func:`memory_tokens` over a run directory's items (None if it has none)."""
    from memlab.eval.items import read_items

    counts = memory_tokens(read_items(Path(run_dir) / "items.jsonl"))
    return sum(counts) / len(counts) if counts else None
