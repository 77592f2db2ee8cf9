"""``metrics.json`` from item rows: every metric overall and per category, with CIs."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from memlab.llm.calls import merge_summaries
from memlab.metrics.stats import groups_of, latency_summary, metric_columns, summarize_table

#: Metrics shown in the CLI's summary table, when present.
HEADLINE = (
    "turn.budget_evidence_recall@1000",
    "turn.recall_any@5",
    "turn.recall_any@10",
    "session.recall_any@5",
    "turn.ndcg_any@10",
    "locomo_f1",
    "exact_match",
    "judge",
)


def summarize_run(items: Sequence[dict[str, Any]], *, seed: int = 0,
                  n_resamples: int = 1000,
                  memory: Sequence[dict[str, Any]] = (),
                  prices: dict[str, Any] | None = None) -> dict[str, Any]:
    """Overall and per-category summaries of every metric, latencies, tokens and errors.

    ``memory`` holds one ``memory.jsonl`` row per conversation (units, tokens, bytes,
    ingest seconds): they give the memory footprint and the ``ingest_per_unit`` latency.
    A probe whose answer failed keeps the retrieval metrics it has (retrieval succeeded);
    its answer metrics are missing, so they count in ``n_excluded``. With ``prices``
    (a config's ``prices:``) it holds ``cost_usd`` too (:func:`run_cost`).
    """
    ok = [row for row in items if not row.get("error")]
    judged = [row["judge_record"] for row in ok if isinstance(row.get("judge_record"), dict)]
    judge_failed = [record["error"] for record in judged if record.get("error")]
    metrics = _metric_summaries(items, seed, n_resamples)
    ingest = merge_summaries(row.get("ingest") or {} for row in memory)
    searched = merge_summaries(row["search_llm"] for row in items if row.get("search_llm"))
    summary = {
        "probes": len(items),
        "errors": {"probes": len(items) - len(ok), "ingest": ingest["errors"],
                   **({"judge": len(judge_failed), "judge_first": judge_failed[0]}
                      if judge_failed else {})},
        "error_rate": (len(items) - len(ok)) / len(items) if items else 0.0,
        "metrics": metrics,
        "latency_seconds": _latencies(items) | _ingest_latency(memory),
        "tokens": (_tokens(ok) | _tokens(judged, "judge_")
                   | _ingest_tokens(ingest, len(items))),
        "cache_hits": sum(bool(row.get("cache_hit")) for row in ok),
        "trimmed": _trimmed(ok),
        "footprint": _footprint(memory),
        "ingest": ingest,
    } | ({"search_llm": searched} if searched["calls"] else {})
    cost = run_cost(summary, prices or {})
    return summary | ({"cost_usd": cost} if cost else {})


def run_cost(summary: dict[str, Any], prices: dict[str, Any]) -> dict[str, Any]:
    """US dollars spent on each priced LLM role's tokens (``prices[role]``: dollars per
    million ``prompt`` and ``completion`` tokens), their ``total`` and ``per_probe``, the
    roles that spent tokens but have no price (``unpriced``: the total leaves them out) and
    the priced roles with no tokens counted (``no_tokens``: unused, or a backend that
    reports none, so their cost of 0 may be wrong).
    Every call's tokens count, a cache hit's too: what the run costs made afresh. Empty
    when nothing is priced."""
    tokens = summary["tokens"]
    spent = {
        "answer": (tokens.get("prompt", {}).get("total", 0),
                   tokens.get("completion", {}).get("total", 0)),
        "judge": (tokens.get("judge_prompt", {}).get("total", 0),
                  tokens.get("judge_completion", {}).get("total", 0)),
        "ingest": (summary["ingest"]["prompt_tokens"], summary["ingest"]["completion_tokens"]),
        "search": (summary.get("search_llm", {}).get("prompt_tokens", 0),
                   summary.get("search_llm", {}).get("completion_tokens", 0)),
    }
    priced = {role: price for role, price in prices.items() if price}
    if not priced:
        return {}
    out: dict[str, Any] = {role: (spent[role][0] * price["prompt"]
                                  + spent[role][1] * price["completion"]) / 1e6
                           for role, price in priced.items()}
    out["total"] = sum(out.values())
    out["per_probe"] = out["total"] / summary["probes"] if summary["probes"] else None
    out["unpriced"] = [role for role, used in spent.items() if sum(used) and role not in priced]
    out["no_tokens"] = [role for role in priced if not sum(spent[role])]  # not used, or
    return out                                                            # counted none


def _ingest_tokens(ingest: dict[str, Any], probes: int) -> dict[str, Any]:
    """LLM tokens spent while ingesting (prompt + completion), in total and per probe
    (what a probe costs beyond its own prompt, for the Pareto cost axis)."""
    if not ingest["calls"]:
        return {}
    total = ingest["prompt_tokens"] + ingest["completion_tokens"]
    return {"ingest": {"total": total, "mean": total / probes if probes else None}}


def _trimmed(items: Sequence[dict[str, Any]]) -> dict[str, int]:
    """Probes whose memory was cut: by the strategy's token budget (``full_context``) and
    by the prompt's context-window fit."""
    return {"memory": sum(bool((row.get("memory_trim") or {}).get("trimmed")) for row in items),
            "prompt": sum(bool(((row.get("llm") or {}).get("trim") or {}).get("dropped"))
                          for row in items)}


def _ingest_latency(memory: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Ingest seconds per stored unit, one value per conversation (chunking, LLM calls,
    embedding and indexing included), and the seconds per probe spent embedding the
    questions ahead in batches (``warm_queries``; search then reads the vectors)."""
    if not memory:
        return {}
    out = {"ingest_per_unit": latency_summary(
        row["ingest_seconds"] / row["units"] if row["units"] else None for row in memory)}
    if any("query_embed_seconds" in row for row in memory):  # rows written since it existed
        out["query_embed_per_probe"] = latency_summary(
            row["query_embed_seconds"] / row["probes"] if row.get("probes")
            and "query_embed_seconds" in row else None for row in memory)
    return out


def _footprint(memory: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Units, Qwen tokens and bytes stored: totals and means per conversation."""
    out: dict[str, Any] = {"conversations": len(memory)}
    for field in ("units", "tokens", "bytes", "ingest_seconds"):
        values = [row[field] for row in memory]
        out[field] = {"total": sum(values), "mean": sum(values) / len(values) if values
                      else None}
    return out


def _metric_summaries(rows: Sequence[dict[str, Any]], seed: int,
                      n_resamples: int) -> dict[str, Any]:
    """Every metric overall and per category (``summarize_by``, all metrics at once)."""
    table = summarize_table(metric_columns(rows), groups_of(rows, "category"),
                            n_resamples=n_resamples, seed=seed)
    return {name: {group: _summary_dict(s) for group, s in by_group.items()}
            for name, by_group in table.items()}


def _summary_dict(summary: Any) -> dict[str, Any]:
    return {"mean": summary.mean, "ci_low": summary.ci_low, "ci_high": summary.ci_high,
            "n": summary.n, "n_excluded": summary.n_excluded}


def _latencies(items: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Each timed phase's wall seconds per probe; with answers, also ``generate_model``:
    the model's own generation seconds, which for a cache hit (whose ``generate`` phase
    is the lookup) are the seconds it took when it was stored."""
    phases = sorted({p for row in items for p in row.get("latency_seconds", {})})
    out = {p: latency_summary(row.get("latency_seconds", {}).get(p) for row in items)
           for p in phases}
    model = [(row.get("llm") or {}).get("generation_seconds") for row in items]
    if any(value is not None for value in model):
        out["generate_model"] = latency_summary(model)
    return out


def _tokens(items: Sequence[dict[str, Any]], prefix: str = "") -> dict[str, Any]:
    """Total and mean of each ``tokens`` field of ``items`` (answer rows, or the judge's
    records with ``prefix`` "judge_": the judge's tokens are a cost of the run too)."""
    fields = sorted({f for row in items for f in row.get("tokens") or {}})
    out: dict[str, Any] = {}
    for f in fields:
        values = [row["tokens"][f] for row in items
                  if (row.get("tokens") or {}).get(f) is not None]
        out[prefix + f] = {"total": int(sum(values)),
                           "mean": sum(values) / len(values) if values else None}
    return out


def error_counts(summary: dict[str, Any]) -> dict[str, int]:
    """``{"probes": n, "ingest": m, "judge": j}`` (older metrics.json files hold one probe
    count)."""
    errors = summary.get("errors", 0)
    if isinstance(errors, dict):
        return {"probes": int(errors.get("probes", 0)), "ingest": int(errors.get("ingest", 0)),
                "judge": int(errors.get("judge", 0))}
    return {"probes": int(errors), "ingest": 0, "judge": 0}


def headline(summary: dict[str, Any],
             extra: Sequence[str] = ()) -> list[tuple[str, dict[str, Any]]]:
    """The headline metrics present in a summary, then the ``extra`` ones, overall, in
    display order."""
    metrics = summary["metrics"]
    names = dict.fromkeys([*HEADLINE, *extra])
    return [(name, metrics[name]["all"]) for name in names if name in metrics]


def render_table(summary: dict[str, Any], title: str = "", extra: Sequence[str] = ()) -> str:
    """A plain-text table of the headline metrics (and the ``extra`` ones) with their 95 %
    CIs."""
    rows = headline(summary, extra)
    lines = [title] if title else []
    width = max([len(n) for n, _ in rows] + [10])
    lines.append(f"{'metric':<{width}}  {'mean':>7}  {'95% CI':>17}  {'n':>5}  {'excl':>5}")
    for name, s in rows:
        ci = "-" if s["ci_low"] is None else f"[{s['ci_low']:.3f}, {s['ci_high']:.3f}]"
        mean = "-" if s["mean"] is None else f"{s['mean']:.3f}"
        lines.append(f"{name:<{width}}  {mean:>7}  {ci:>17}  {s['n']:>5}  {s['n_excluded']:>5}")
    lines += judge_lines(summary)
    if error_counts(summary)["judge"]:
        lines.append(f"judge call errors {error_counts(summary)['judge']} (their probes have "
                     f"no judged score; first: {summary['errors'].get('judge_first')})")
    errors = error_counts(summary)
    lines.append(f"probes {summary['probes']}, errors {errors['probes']}, "
                 f"cache hits {summary['cache_hits']}"
                 + (" (their generate latency is the cache lookup; generate_model is the "
                    "model's own time)" if summary["cache_hits"]
                    and "generate_model" in summary["latency_seconds"] else ""))
    issues = summary.get("dataset_issues") or {}
    if issues:
        lines.append("dataset issues at load: " + ", ".join(
            f"{n} {action}" for action, n in issues.items()) + " (Dataset.issues lists them)")
    ingest = summary.get("ingest") or {}
    if ingest.get("calls"):
        lines.append(f"ingest LLM calls {ingest['calls']}, errors {ingest['errors']}"
                     + (f" (first: {ingest['error_messages'][0]})" if ingest["errors"] else "")
                     + f", {ingest['seconds']:.1f} s")
    trimmed = summary.get("trimmed") or {}
    if trimmed.get("memory") or trimmed.get("prompt"):
        lines.append(f"memory cut to fit: {trimmed.get('memory', 0)} probes by the strategy's "
                     f"token budget, {trimmed.get('prompt', 0)} by the context window")
    searched = summary.get("search_llm") or {}
    if searched.get("calls"):
        lines.append(f"search LLM calls {searched['calls']} ({searched['cached']} cached), "
                     f"errors {searched['errors']}, {searched['seconds']:.1f} s")
    for phase, lat in summary["latency_seconds"].items():
        if lat["p50"] is not None:
            lines.append(f"latency {phase:<15} p50 {lat['p50'] * 1000:9.1f} ms   "
                         f"p95 {lat['p95'] * 1000:9.1f} ms   max {lat['max'] * 1000:9.1f} ms")
    footprint = summary.get("footprint") or {}
    if footprint.get("conversations"):
        lines.append(f"memory {footprint['conversations']} conversations: "
                     f"{footprint['units']['mean']:.0f} units, "
                     f"{footprint['tokens']['mean']:.0f} tokens, "
                     f"{footprint['bytes']['mean'] / 1024:.1f} KiB per conversation")
    for name, tok in summary["tokens"].items():
        lines.append(f"tokens {name:<16} total {tok['total']:>9}   mean/probe "
                     f"{tok['mean']:.1f}" if tok["mean"] is not None else f"tokens {name}: -")
    cost = summary.get("cost_usd")
    if cost:
        roles = ", ".join(f"{role} {value:.4f}" for role, value in cost.items()
                          if role not in ("total", "per_probe", "unpriced", "no_tokens"))
        per_probe = f", {cost['per_probe']:.6f} per probe" if cost["per_probe"] else ""
        unpriced = (f"; not priced: {', '.join(cost['unpriced'])}" if cost["unpriced"]
                    else "")
        if cost.get("no_tokens"):
            unpriced += f"; priced but no tokens counted: {', '.join(cost['no_tokens'])}"
        lines.append(f"cost USD {cost['total']:.4f} ({roles}){per_probe}{unpriced}")
    return "\n".join(lines)


def judge_lines(summary: dict[str, Any]) -> list[str]:
    """The judge's measured agreement (shown beside any judged accuracy) and, below the
    threshold, a loud warning; nothing for an unjudged run."""
    check = summary.get("judge_check")
    if not check:
        return ["judge agreement NOT MEASURED: judged accuracy unverified"] if (
            "judge" in summary.get("metrics", {})) else []
    from memlab.eval.judge_check import warning

    def fmt(v: float | None) -> str:
        return "-" if v is None else f"{v:.3f}"

    ci = check.get("kappa_ci")
    line = (f"judge agreement {fmt(check['agreement'])} on {check['n']} labelled cases, "
            f"kappa {fmt(check['kappa'])}"
            + (f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else "")
            + f", yes-rate correct {fmt(check['yes_rate_correct'])} / wrong "
            f"{fmt(check['yes_rate_wrong'])}")
    return [line] if check.get("ok") else [line, "!" * 78, warning(check), "!" * 78]
