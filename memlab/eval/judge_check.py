"""``judge-check``: how far a judge agrees with known labels, before its accuracy is believed.

:func:`judge_check` asks the judge about every case of the labelled set
(:mod:`memlab.eval.judge_set`) and reports agreement, the yes-rate on correct and on wrong
responses, and Cohen's kappa, each with a bootstrap 95 % CI, overall, per question type and
per kind of response. A reply the judge's template cannot parse counts as a disagreement
(a judge that does not answer is not right). Every call goes through the LLM response
cache, so checking the same judge again - as every judged run does first - costs nothing.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from memlab.data.schema import Dataset
from memlab.eval.config import DatasetSpec, ExperimentConfig, JudgeSpec, Spec
from memlab.eval.judge_set import JudgeCase, build_judge_set, split_dataset
from memlab.metrics.judge import Judge, template_hash

#: Below this agreement a judged accuracy is shown with a loud warning.
DEFAULT_THRESHOLD = 0.9
#: The judge template a dataset is judged with unless one is named: the one that agreed
#: best with the labels on held-out conversations (README, "judge-check").
DEFAULT_TEMPLATES = {"locomo": "judge_locomo_criteria",
                     "longmemeval": "judge_longmemeval_criteria"}


def default_template(dataset: str) -> str | None:
    """The judge template for ``dataset`` (None: the judge spec's own default)."""
    return DEFAULT_TEMPLATES.get(dataset)


def judge_check(judge: JudgeSpec, dataset: Dataset, *, per_type: int = 2, seed: int = 0,
                split: str = "all", template_dirs: Sequence[str] = (),
                cache: str = "readwrite", threshold: float = DEFAULT_THRESHOLD,
                n_resamples: int = 1000) -> dict[str, Any]:
    """The judge's figures on the labelled set built from ``dataset``'s ``split``
    conversations (``all``, ``dev`` or ``heldout``; see :func:`split_dataset`)."""
    from memlab.errors import check_number
    from memlab.eval.answer import LLMJudge

    check_number("judge-check: per_type", per_type, low=1, integer=True)
    check_number("judge-check: threshold", threshold, low=0.0, high=1.0)
    config = ExperimentConfig.model_validate({
        "name": "judge-check", "dataset": DatasetSpec(name=dataset.name), "judge": judge,
        "template_dirs": list(template_dirs), "cache": {"llm": cache}})
    checker = LLMJudge(judge, config)
    cases = build_judge_set(split_dataset(dataset, split), per_type=per_type, seed=seed)
    rows = _judge_cases(checker, cases)
    answered = [r for r in rows if not r.get("error")]
    failed = [r for r in rows if r.get("error")]
    # a call that failed is no verdict of the judge's: the figures are over the answered
    # cases (none answered: not measured), and the failures are counted apart
    result = agreement_figures(answered, seed=seed, n_resamples=n_resamples)
    result["call_errors"] = len(failed)
    if failed:
        result["first_call_error"] = failed[0]["error"]
    first = next((r["record"] for r in rows if r["record"].get("digest")), rows[0]["record"]
                 if rows else {})
    result.update({
        "dataset": dataset.name, "split": split, "per_type": per_type, "seed": seed,
        "threshold": threshold,
        "ok": result["agreement"] is not None and result["agreement"] >= threshold
        and not failed,
        "tokens_per_judgement": _mean_tokens(rows),
        "judge": {"llm": judge.llm.model_dump(), "template": judge.template,
                  "model": first.get("model"), "digest": first.get("digest"),
                  "template_version": checker.template.version,
                  "template_hash": template_hash(checker.template.path.read_text("utf-8"))},
        "cases": rows,
    })
    return result


#: Failed judge calls in a row after which the check stops asking (a judge that cannot
#: be reached would otherwise be retried on every labelled case).
GIVE_UP_AFTER = 3


def _judge_cases(checker: Judge, cases: Sequence[JudgeCase]) -> list[dict[str, Any]]:
    """Each case judged, stopping after :data:`GIVE_UP_AFTER` call failures in a row with
    no success before them (the rest are marked as not asked)."""
    from tqdm.auto import tqdm

    rows: list[dict[str, Any]] = []
    for case in tqdm(cases, desc="judge check", unit="case", leave=False):
        if len(rows) >= GIVE_UP_AFTER and all(r.get("error") for r in rows):
            rows.append(_not_asked(case, rows[0]["error"]))
            continue
        rows.append(_judge_case(checker, case))
    return rows


def _not_asked(case: JudgeCase, error: str) -> dict[str, Any]:
    return {"key": case.key(), "group": case.group, "kind": case.kind,
            "question": case.probe.question, "gold": case.probe.answer,
            "response": case.response, "correct": case.correct, "verdict": None,
            "raw": None, "error": f"not asked: the first {GIVE_UP_AFTER} calls failed ({error})",
            "record": {}}


def _judge_case(checker: Judge, case: JudgeCase) -> dict[str, Any]:
    out = checker.judge(case.probe, case.response)
    record = out["judge_record"]
    verdict = out["judge_score"]
    return {"key": case.key(), "group": case.group, "kind": case.kind,
            "question": case.probe.question, "gold": case.probe.answer,
            "response": case.response, "correct": case.correct,
            "verdict": None if verdict is None else bool(verdict),
            "raw": record.get("raw"), "error": record.get("error"),
            "record": {k: record.get(k) for k in ("model", "digest", "prompt_sha256",
                                                  "tokens")}}


def _mean_tokens(rows: Sequence[dict[str, Any]]) -> dict[str, float | None]:
    """Mean prompt and completion tokens per judgement (the backend's own counts)."""
    counts = [r["record"].get("tokens") or {} for r in rows]
    return {part: (round(float(np.mean(values)), 1) if values else None)
            for part in ("prompt", "completion")
            for values in [[c[part] for c in counts if c.get(part) is not None]]}


def agreement_figures(rows: Sequence[dict[str, Any]], *, seed: int = 0,
                      n_resamples: int = 1000) -> dict[str, Any]:
    """Agreement, yes-rates and kappa (with CIs), overall, by group and by kind."""
    labels = np.array([bool(r["correct"]) for r in rows], dtype=bool)
    said_yes = np.array([r["verdict"] is True for r in rows], dtype=bool)
    agrees = np.array([r["verdict"] is not None and r["verdict"] == r["correct"]
                       for r in rows], dtype=bool)
    # an unparsed reply is a disagreement: the judge "said" the opposite of the label
    predicted = np.where(np.array([r["verdict"] is None for r in rows], dtype=bool),
                         ~labels, said_yes)
    figures = _figures(labels, predicted, said_yes, agrees)
    figures["agreement_ci"] = _ci(lambda i: float(agrees[i].mean()), len(rows), seed,
                                  n_resamples)
    figures["kappa_ci"] = _ci(lambda i: cohen_kappa(labels[i], predicted[i]), len(rows), seed,
                              n_resamples)
    figures["unparsed"] = sum(r["verdict"] is None for r in rows)
    figures["by_group"] = _split(rows, "group", labels, predicted, said_yes, agrees)
    figures["by_kind"] = _split(rows, "kind", labels, predicted, said_yes, agrees)
    return figures


def _figures(labels: np.ndarray, predicted: np.ndarray, said_yes: np.ndarray,
             agrees: np.ndarray) -> dict[str, Any]:
    n = len(labels)
    return {
        "n": n,
        "agreement": float(agrees.mean()) if n else None,
        "yes_rate_correct": float(said_yes[labels].mean()) if labels.any() else None,
        "yes_rate_wrong": float(said_yes[~labels].mean()) if (~labels).any() else None,
        "kappa": cohen_kappa(labels, predicted) if n else None,
    }


def _split(rows: Sequence[dict[str, Any]], field: str, labels: np.ndarray,
           predicted: np.ndarray, said_yes: np.ndarray, agrees: np.ndarray
           ) -> dict[str, dict[str, Any]]:
    values = np.array([r[field] for r in rows])
    out = {}
    for value in sorted(set(values.tolist())):
        mask = values == value
        figures = _figures(labels[mask], predicted[mask], said_yes[mask], agrees[mask])
        figures.pop("kappa")  # one label class per kind: kappa is undefined there
        out[str(value)] = figures
    return out


def cohen_kappa(labels: np.ndarray, predicted: np.ndarray) -> float | None:
    """Cohen's kappa of two yes/no raters; None when chance agreement is 1 (one class only)."""
    if len(labels) == 0:
        return None
    observed = float(np.mean(labels == predicted))
    p_label, p_pred = float(labels.mean()), float(predicted.mean())
    chance = p_label * p_pred + (1 - p_label) * (1 - p_pred)
    if chance >= 1.0:
        return None
    return (observed - chance) / (1 - chance)


def _ci(stat: Any, n: int, seed: int, n_resamples: int) -> list[float] | None:
    """Percentile bootstrap 95 % CI of ``stat(indices)`` over cases."""
    if n == 0:
        return None
    rng = np.random.default_rng(seed)
    values = [stat(rng.integers(0, n, n)) for _ in range(n_resamples)]
    kept = np.array([v for v in values if v is not None], dtype=float)
    if len(kept) == 0:
        return None
    return [round(float(np.percentile(kept, q)), 10) + 0.0 for q in (2.5, 97.5)]


def parse_judge(text: str, template: str | None = None) -> JudgeSpec:
    """A judge from the CLI's ``--judge``: a catalog model (``qwen2.5-coder-1.5b``), a
    ``.gguf`` path, a backend name (``ollama``), or YAML (``{name: ollama, params: {...}}``
    for the LLM, or ``{llm: ..., template: ...}`` for the whole judge)."""
    from memlab.llm.models import parse_llm

    extra: dict[str, Any] = {"template": template} if template else {}
    llm = parse_llm(text)
    if "llm" in llm:
        return JudgeSpec.model_validate({**llm, **extra})
    return JudgeSpec.model_validate({"llm": Spec.model_validate(llm), **extra})


def render_check(result: dict[str, Any]) -> str:
    """The check as a short text table (overall, per group, per kind)."""
    def pct(v: float | None) -> str:
        return "-" if v is None else f"{v:.3f}"

    def ci(v: list[float] | None) -> str:
        return "-" if v is None else f"[{v[0]:.3f}, {v[1]:.3f}]"

    judge = result["judge"]
    lines = [f"judge {judge['model']} ({judge['llm']['name']}, template {judge['template']}) "
             f"on {result['n']} labelled {result['dataset']} cases"
             + (f" ({result['split']} split, seed {result['seed']})"
                if result.get("split", "all") != "all" else ""),
             f"agreement {pct(result['agreement'])} {ci(result['agreement_ci'])}   "
             f"kappa {pct(result['kappa'])} {ci(result['kappa_ci'])}",
             f"yes-rate on correct {pct(result['yes_rate_correct'])}   on wrong "
             f"{pct(result['yes_rate_wrong'])}   unparsed {result['unparsed']}"
             + (f"   call errors {result['call_errors']} (left out; first: "
                f"{result.get('first_call_error')})" if result.get("call_errors") else ""),
             _tokens_line(result.get("tokens_per_judgement") or {})]
    for field in ("by_group", "by_kind"):
        for name, f in result[field].items():
            lines.append(f"  {name:<28} n {f['n']:>3}  agreement {pct(f['agreement'])}  "
                         f"yes|correct {pct(f['yes_rate_correct'])}  "
                         f"yes|wrong {pct(f['yes_rate_wrong'])}")
    if not result["ok"]:
        lines.append(warning(result))
    return "\n".join(lines)


def _tokens_line(tokens: dict[str, float | None]) -> str:
    def show(v: float | None) -> str:
        return "-" if v is None else f"{v:.1f}"

    return (f"tokens per judgement: prompt {show(tokens.get('prompt'))}, completion "
            f"{show(tokens.get('completion'))}")


def warning(check: dict[str, Any]) -> str:
    """The loud line shown beside any accuracy from a judge below the threshold."""
    agreement = "n/a" if check["agreement"] is None else f"{check['agreement']:.3f}"
    if check.get("call_errors"):
        return (f"WARNING: {check['call_errors']} of the judge's calls on the labelled cases "
                f"failed (first: {check.get('first_call_error')}); agreement {agreement} on "
                f"the {check['n']} it answered: judged accuracy is NOT trustworthy")
    return (f"WARNING: judge agreement {agreement} < {check['threshold']:.2f} on "
            f"{check['n']} labelled cases: judged accuracy is NOT trustworthy")


def summary_entry(check: dict[str, Any]) -> dict[str, Any]:
    """The check's figures as kept in ``metrics.json`` (no per-case rows)."""
    return {k: v for k, v in check.items() if k != "cases"}


def check_for_run(config: ExperimentConfig, dataset: Dataset,
                  run_dir: Path | None = None) -> dict[str, Any]:
    """The check every judged run does first: figures for ``metrics.json`` (the cases go
    to ``<run_dir>/judge_check.json``); a loud warning on stderr below the threshold."""
    assert config.judge is not None
    result = judge_check(config.judge, dataset, template_dirs=config.template_dirs,
                         cache=config.cache.llm, seed=config.seed)
    if run_dir is not None:
        (run_dir / "judge_check.json").write_text(
            json.dumps(result, indent=2, default=str) + "\n", encoding="utf-8")
    if not result["ok"]:
        print(f"\n{'!' * 78}\n{warning(result)}\n{'!' * 78}", file=sys.stderr)
    return summary_entry(result)
