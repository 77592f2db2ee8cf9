"""One MLflow trace per probe, rebuilt from a finished run's ``items.jsonl``.

A probe's trace has a root span (request = the question, response = the answer) and a
child span per phase the run measured: ``search`` (RETRIEVER: strategy, k, as_of, the
hits with their scores), ``prompt`` (CHAIN: template name/version/hash, memory tokens,
the trim record), ``generate`` (LLM: backend, model, digest, token usage, cache hit),
``judge`` (LLM, judged runs) and ``score`` (EVALUATOR: the probe's answer metrics).
Spans carry the phase latencies the run measured, laid end to end, so MLflow's GenAI
overview shows the run's real latency, token usage and errors. Traces are linked to the
run, grouped by conversation (MLflow's trace session), tagged with conversation,
category, probe and correctness, and name the prompt versions they rendered.

``tracking.traces`` chooses the probes: ``auto`` (every probe of an answered run, none
of a retrieval-only one: a 32-configuration LoCoMo sweep would add 63,552 traces),
``on``, ``off`` or ``sample N`` (N probes chosen by a hash of their ids, the same N in
every configuration, so traces compare across a sweep).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import warnings
from collections.abc import Sequence
from typing import Any

from memlab.errors import ConfigError

#: Probe phases in the order the harness runs them, with the span type of each.
PHASES = (("search", "RETRIEVER"), ("prompt", "CHAIN"), ("generate", "LLM"),
          ("judge", "LLM"), ("score", "EVALUATOR"))
_SAMPLE = re.compile(r"^sample\s+(\d+)$")
_NS = 1_000_000_000
#: Spans per export batch of MLflow's span processor (its default, 5, makes one store
#: transaction per 5 spans; measured 202 vs ~110 ms a probe on SQLite, two busy cores).
SPAN_BATCH = "600"
#: MLflow's async trace workers on a SQLite store. With its default 10, a span batch's
#: ``log_spans`` can race the same trace's ``start_trace`` in another worker: MLflow then
#: logs "Could not create trace_info ... spans for these traces will be dropped" (1 of 200
#: and 41 of 400 traces lost their spans in two sweeps here). One worker orders them.
SQLITE_WORKERS = "1"


def policy_error(policy: str) -> str | None:
    """What is wrong with a ``tracking.traces`` value (None when it is ``auto``, ``on``,
    ``off`` or ``sample N``, in any case, with any spaces around)."""
    text = str(policy).strip().lower()
    if text in ("auto", "on", "off") or _SAMPLE.match(text):
        return None
    return f"expected auto, on, off or 'sample N' (N probes per run), got {policy!r}"


def check_policy(policy: str) -> str:
    """``policy`` normalised (stripped, lower case); a ConfigError when it is not one."""
    error = policy_error(policy)
    if error is not None:
        raise ConfigError(f"tracking.traces: {error}")
    return str(policy).strip().lower()


def traced_items(policy: str, items: Sequence[dict[str, Any]], answered: bool
                 ) -> list[dict[str, Any]]:
    """The items ``policy`` traces (``auto``: all of an answered run, none otherwise)."""
    text = check_policy(policy)
    if text == "off" or (text == "auto" and not answered):
        return []
    match = _SAMPLE.match(text)
    if match is None:
        return list(items)
    chosen = set(sorted((_hash(row["probe_id"]), row["probe_id"]) for row in items)
                 [:int(match.group(1))])
    return [row for row in items if (_hash(row["probe_id"]), row["probe_id"]) in chosen]


def log_traces(client: Any, items: Sequence[dict[str, Any]], config: dict[str, Any], *,
               experiment_id: str, run_id: str, end_time_ns: int,
               prompts: dict[str, Any] | None = None) -> list[str]:
    """Log one trace per item, linked to ``run_id``; returns their ids. The traces end
    at ``end_time_ns`` (when the run wrote its last item).

    Traces are written after the fact, so every span is started and ended through
    MLflow's public tracing API (``mlflow.start_span_no_context`` with ``start_time_ns``,
    ``span.end(end_time_ns=...)``) at the times the run measured. MLflow's exporter
    writes them from its background threads; they are flushed before being linked to
    the run. ``mlflow.llm.provider`` is left unset on purpose: with it, MLflow fetches a
    model price list from the internet. Unless the user set it, the span export batch is
    raised to ``SPAN_BATCH`` (MLflow reads it when its tracer starts in this process).
    """
    os.environ.setdefault("MLFLOW_ASYNC_TRACE_LOGGING_MAX_SPAN_BATCH_SIZE", SPAN_BATCH)
    if str(client.tracking_uri).startswith("sqlite:"):
        os.environ.setdefault("MLFLOW_ASYNC_TRACE_LOGGING_MAX_WORKERS", SQLITE_WORKERS)
    import mlflow

    context, prompts = _context(config), prompts or {}
    start = end_time_ns - sum(_duration_ns(row) for row in items)
    starts = []
    for row in items:
        starts.append(start)
        start += _duration_ns(row)
    ids = [_log_probe(row, context, at, prompts, experiment_id)
           for row, at in zip(items, starts, strict=True)]
    mlflow.flush_trace_async_logging()
    lost = [i for i, trace_id in enumerate(ids) if not _has_spans(client, trace_id)]
    if lost:  # logged again once, each a new trace
        for i in lost:
            ids[i] = _log_probe(items[i], context, starts[i], prompts, experiment_id)
        mlflow.flush_trace_async_logging()
        still = [items[i]["probe_id"] for i in lost if not _has_spans(client, ids[i])]
        if still:
            warnings.warn(f"MLflow lost the spans of {len(still)} trace(s) twice "
                          f"(probes {', '.join(map(str, still[:5]))}"
                          f"{', ...' if len(still) > 5 else ''}); their items.jsonl rows "
                          "are intact", RuntimeWarning, stacklevel=2)
    for first in range(0, len(ids), 100):  # MLflow links at most 100 traces per call
        client.link_traces_to_run(ids[first:first + 100], run_id)
    return ids


def _has_spans(client: Any, trace_id: str) -> bool:
    """Whether the store holds ``trace_id`` with its spans (MLflow can keep the trace's
    info and drop its spans: see ``SQLITE_WORKERS``)."""
    try:
        return bool(client.get_trace(trace_id).data.spans)
    except Exception:  # a trace MLflow cannot read back counts as lost
        return False


def _context(config: dict[str, Any]) -> dict[str, Any]:
    """What every probe of the run shares: strategy, k, backends."""
    memory = config.get("memory") or {}
    retrieval = (memory.get("params") or {}).get("retrieval") or {}
    answer = config.get("answer") or {}
    judge = config.get("judge") or {}
    return {"strategy": retrieval.get("name") or memory.get("name"),
            "k": config.get("k"), "memory": memory.get("name"),
            "backend": (answer.get("llm") or {}).get("name"),
            "judge_backend": (judge.get("llm") or {}).get("name")}


def _log_probe(row: dict[str, Any], context: dict[str, Any], start: int,
               prompts: dict[str, Any], experiment_id: str) -> str:
    """The probe's trace: a root span, then one child span per measured phase laid end
    to end from ``start``; returns the trace id."""
    import mlflow
    from mlflow.entities import SpanStatus, SpanStatusCode
    linked = _linked_prompts(row, prompts)
    tags = {**_tags(row), **({"mlflow.linkedPrompts": json.dumps(linked)} if linked else {})}
    root = mlflow.start_span_no_context(
        "probe", span_type="CHAIN", inputs={"question": row.get("question")},
        attributes={"memlab.probe_id": row["probe_id"]}, tags=tags,
        metadata={"mlflow.trace.session": str(row.get("conversation_id"))},
        experiment_id=experiment_id, start_time_ns=start)
    at = start
    for phase, span_type in PHASES:
        seconds = (row.get("latency_seconds") or {}).get(phase)
        if seconds is None:
            continue
        inputs, outputs, attributes = _PHASE_DATA[phase](row, context)
        span = mlflow.start_span_no_context(phase, span_type=span_type, parent_span=root,
                                            inputs=inputs, attributes=attributes,
                                            start_time_ns=at)
        at += int(seconds * _NS)
        span.end(outputs=outputs, end_time_ns=at)
    if row.get("error"):
        status = SpanStatus(SpanStatusCode.ERROR, str(row["error"]))
        root.set_status(status)  # type: ignore[arg-type]  # documented: SpanStatus too
    root.end(outputs={"answer": row.get("answer")}, end_time_ns=max(at, start + 1))
    return str(root.trace_id)


def _tags(row: dict[str, Any]) -> dict[str, str]:
    tags = {"conversation": str(row.get("conversation_id")),
            "category": str(row.get("category")), "probe_id": str(row["probe_id"])}
    correct = _correct(row)
    if correct is not None:
        tags["correct"] = str(correct).lower()
    return tags


def _correct(row: dict[str, Any]) -> bool | None:
    """The judge's verdict when judged, else exact match (None for retrieval-only)."""
    metrics = row.get("metrics") or {}
    for name in ("judge", "exact_match"):
        if metrics.get(name) is not None:
            return bool(metrics[name] >= 0.5)
    return None


def _search(row: dict[str, Any], ctx: dict[str, Any]) -> tuple[Any, Any, dict[str, Any]]:
    hits = row.get("retrieved") or []
    documents = [{"id": h.get("id"), "page_content": f"{h.get('kind', 'unit')} {h.get('id')}",
                  "metadata": {"doc_uri": h.get("id"), "chunk_id": h.get("id"),
                               "score": h.get("score"), "session_id": h.get("session_id"),
                               "at": h.get("at"), "tokens": h.get("tokens")}} for h in hits]
    inputs = {"query": row.get("question"), "strategy": ctx["strategy"], "k": ctx["k"],
              "as_of": row.get("asked_at")}
    attributes = {"memlab.strategy": str(ctx["strategy"]), "memlab.k": str(ctx["k"]),
                  "memlab.as_of": str(row.get("asked_at")),
                  "memlab.n_retrieved": row.get("n_retrieved", len(hits)),
                  "memlab.hit_ids": [str(h.get("id")) for h in hits],
                  "memlab.hit_scores": [float(h.get("score") or 0.0) for h in hits]}
    return inputs, documents, attributes


def _prompt(row: dict[str, Any], ctx: dict[str, Any]) -> tuple[Any, Any, dict[str, Any]]:
    llm = row.get("llm") or {}
    tokens = row.get("tokens") or {}
    inputs = {"template": llm.get("template"), "version": llm.get("template_version"),
              "memory_tokens": tokens.get("memory")}
    outputs = {"prompt_sha256": llm.get("prompt_sha256"),
               "qwen_prompt_tokens": tokens.get("qwen_prompt"), "trim": llm.get("trim")}
    attributes = {"memlab.template": str(llm.get("template")),
                  "memlab.template_version": str(llm.get("template_version")),
                  "memlab.prompt_sha256": str(llm.get("prompt_sha256")),
                  "memlab.memory_tokens": int(tokens.get("memory") or 0)}
    return inputs, outputs, attributes


def _generate(row: dict[str, Any], ctx: dict[str, Any]) -> tuple[Any, Any, dict[str, Any]]:
    llm = row.get("llm") or {}
    tokens = row.get("tokens") or {}
    prompt, completion = int(tokens.get("prompt") or 0), int(tokens.get("completion") or 0)
    attributes = {"mlflow.chat.tokenUsage": {"input_tokens": prompt,
                                             "output_tokens": completion,
                                             "total_tokens": prompt + completion},
                  "mlflow.llm.model": str(llm.get("model")),
                  "memlab.backend": str(ctx["backend"]),
                  "memlab.digest": str(llm.get("digest")),
                  "memlab.cache_hit": bool(row.get("cache_hit")),
                  "memlab.seconds": float((row.get("latency_seconds") or {})
                                          .get("generate") or 0.0)}
    inputs = {"prompt_sha256": llm.get("prompt_sha256"), "prompt_tokens": prompt}
    return inputs, {"text": row.get("raw_answer"), "completion_tokens": completion}, attributes


def _judge(row: dict[str, Any], ctx: dict[str, Any]) -> tuple[Any, Any, dict[str, Any]]:
    record = row.get("judge_record") or {}
    attributes = {"mlflow.llm.model": str(record.get("model")),
                  "memlab.backend": str(record.get("backend") or ctx["judge_backend"]),
                  "memlab.digest": str(record.get("digest")),
                  "memlab.template": str(record.get("template")),
                  "memlab.template_version": str(record.get("template_version")),
                  "memlab.cache_hit": bool(record.get("cache_hit"))}
    inputs = {"question": row.get("question"), "gold": row.get("gold"),
              "response": row.get("answer"), "prompt_sha256": record.get("prompt_sha256")}
    outputs = {"raw": record.get("raw"), "verdict": (row.get("metrics") or {}).get("judge"),
               "error": record.get("error")}
    return inputs, outputs, attributes


def _score(row: dict[str, Any], ctx: dict[str, Any]) -> tuple[Any, Any, dict[str, Any]]:
    metrics = row.get("metrics") or {}
    shown = {k: v for k, v in metrics.items() if "@" not in k or k.endswith(("@5", "@1000"))}
    return {"answer": row.get("answer"), "gold": row.get("gold")}, shown, {}


_PHASE_DATA = {"search": _search, "prompt": _prompt, "generate": _generate,
               "judge": _judge, "score": _score}


def _linked_prompts(row: dict[str, Any], prompts: dict[str, Any]) -> list[dict[str, str]]:
    """The registered prompt versions this probe rendered (MLflow's linkedPrompts form)."""
    names = [(row.get("llm") or {}).get("template"),
             (row.get("judge_record") or {}).get("template")]
    return [{"name": prompts[n].name, "version": str(prompts[n].version)}
            for n in names if n in prompts]


def _duration_ns(row: dict[str, Any]) -> int:
    latency = row.get("latency_seconds") or {}
    return max(1, sum(int((latency.get(p) or 0.0) * _NS) for p, _ in PHASES))


def _hash(probe_id: str) -> str:
    return hashlib.sha256(str(probe_id).encode()).hexdigest()
