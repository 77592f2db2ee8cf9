"""The harness CLI. Each subcommand wraps one public function notebooks call directly."""

from __future__ import annotations

import argparse
import json
import sys
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

from memlab.errors import ConfigError, MemlabError, MemlabWarning


def cmd_run(args: argparse.Namespace) -> int:
    from memlab.eval.run import evaluate

    if args.repeats is not None and args.repeats != 1:
        return _run_repeats(args)
    with _executor(args) as executor, _shown_if_not_logged(_print_run):
        result = evaluate(args.config, out=args.out, overrides=args.set, workers=args.workers,
                          track=False if args.no_mlflow else None,
                          retry_errors=args.retry_errors, executor=executor)
    _print_run(result)
    if result.mlflow_run_id:
        from memlab.eval.tracking import ui_link

        print(f"MLflow run: {result.mlflow_run_id}\nMLflow UI: {ui_link(result.run_dir)}")
    return 0


def _print_run(result: Any) -> None:
    from memlab.eval.summary import render_table

    print(render_table(result.summary, f"\n{result.config.name} ({result.summary['dataset']})",
                       result.config.scorers))  # a scorer of the user's own is shown too
    print(f"\nrun directory: {result.run_dir}")


@contextmanager
def _shown_if_not_logged(show: Callable[[Any], None]) -> Iterator[None]:
    """Finished work whose MLflow mirror failed is shown (``show``) before the error."""
    from memlab.eval.tracking import NotLoggedError

    try:
        yield
    except NotLoggedError as exc:
        show(exc.done)
        raise


def _run_repeats(args: argparse.Namespace) -> int:
    from memlab.eval.repeat import evaluate_repeats, render_spread

    with _executor(args) as executor:
        result = evaluate_repeats(args.config, args.repeats, out=args.out,
                                  overrides=args.set, workers=args.workers,
                                  track=False if args.no_mlflow else None, executor=executor,
                                  retry_errors=args.retry_errors)
    print(f"\n{result.name}: {len(result.runs)} runs, "
          "answer seeds varied (mean of each run's mean)")
    print(render_spread(result))
    print(f"\nrun directories: {result.out_dir}/seed-*  (spread: {result.out_dir}/repeats.json)")
    return 0


def cmd_sweep(args: argparse.Namespace) -> int:
    from memlab.eval.sweep import sweep

    with _executor(args) as executor, _shown_if_not_logged(_print_table):
        table = sweep(args.config, out=args.out, overrides=args.set, workers=args.workers,
                      track=False if args.no_mlflow else None, executor=executor,
                      only=args.only, retry_errors=args.retry_errors)
    _print_table(table)
    if not args.no_mlflow and len(table) and _tracked(table):
        from memlab.eval.tracking import ui_link

        print(f"MLflow UI: {ui_link(table['dir'].iloc[-1])}")
    return 0


def _print_table(table: Any) -> None:
    print(table.to_string(index=False))


def cmd_tune(args: argparse.Namespace) -> int:
    from memlab.eval.tune import tune

    result = tune(args.config, out=args.out, overrides=args.set, trials=args.trials,
                  track=False if args.no_mlflow else None, progress=not args.quiet)
    print(result.table())
    return 0


def cmd_train_reranker(args: argparse.Namespace) -> int:
    from memlab.eval.train_reranker import train_reranker

    manifest = train_reranker(args.config, args.only, overrides=args.set, out=args.out,
                              negatives=args.negatives, epochs=args.epochs,
                              batch_size=args.batch_size, learning_rate=args.learning_rate,
                              seed=args.seed, progress=not args.quiet)
    pairs = manifest["pairs"]
    _print_trained(manifest, f"{pairs['positive']} positive + {pairs['negative']} negative "
                   "pairs")
    return 0


def cmd_train_embedder(args: argparse.Namespace) -> int:
    from memlab.eval.train_embedder import train_embedder

    manifest = train_embedder(args.config, args.only, overrides=args.set, model=args.model,
                              top_n=args.top_n, negatives=args.negatives, epochs=args.epochs,
                              batch_size=args.batch_size, learning_rate=args.learning_rate,
                              seed=args.seed, mini_batch=args.mini_batch,
                              mine_with=args.mine_with, progress=not args.quiet)
    _print_trained(manifest, f"{manifest['triplets']} (question, positive) pairs with "
                   f"{manifest['hard_negatives']} hard negatives")
    return 0


def _print_trained(manifest: dict, examples: str) -> None:
    """What a train-* command trained on (``examples``: what it mined) and where it wrote."""
    trained, seconds = manifest["trained_on"], manifest["seconds"]
    from memlab.eval.config import ProbeSplit

    part = ProbeSplit.model_construct(**{k: v for k, v in trained.items()
                                         if k in ProbeSplit.model_fields})
    print(f"trained on {part.describe()}: {trained['conversations']} conversations, "
          f"{trained['probes']} probes, {examples}; mining {seconds['mining']} s, "
          f"training {seconds['training']} s")
    print(f"model: {manifest['model']}")


def cmd_scale(args: argparse.Namespace) -> int:
    from memlab.eval.scale import DEFAULT_METRICS, scale

    metrics = args.metric or list(DEFAULT_METRICS)
    table = scale(args.config, [t for t in args.tokens.split(",") if t.strip()], out=args.out,
                  overrides=args.set, metrics=metrics, seed=args.seed,
                  track=False if args.no_mlflow else None, progress=not args.quiet)
    shown = table[["strategy", "tokens", "history_tokens", "probes"]].copy()
    for metric in metrics:  # each mean with its 95 % bootstrap CI
        shown[metric] = [_with_ci(row[metric], row[f"{metric}.ci_low"], row[f"{metric}.ci_high"])
                         for _, row in table.iterrows()]
    print(shown.to_string(index=False))
    print(f"\ntable and plot: {Path(table['run_dir'].iloc[0]).parents[1]}/scale.{{csv,png}}")
    return 0


def _with_ci(mean: Any, low: Any, high: Any) -> str:
    """``0.851 [0.830, 0.870]``; ``-`` for a metric no probe had."""
    import math

    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return "-"
    if low is None or (isinstance(low, float) and math.isnan(low)):
        return f"{mean:.3f}"
    return f"{mean:.3f} [{low:.3f}, {high:.3f}]"


def _tracked(table: Any) -> bool:
    """Whether the sweep's runs were mirrored into MLflow (their config says so)."""
    from memlab.eval.tracking import RunRecord

    return bool(RunRecord.open(table["dir"].iloc[-1]).tracking.get("mlflow", True))


def cmd_validate(args: argparse.Namespace) -> int:
    from memlab.embed.sentence_transformer import missing_folder
    from memlab.eval.config import expand_grid, read_raw
    from memlab.llm.models import catalog_model, install_command, model_available

    if "tune" in read_raw(args.config)[0]:
        from memlab.eval.tune import tune_plan

        _, _, spec, dims, base = tune_plan(args.config, args.set)
        print(f"ok: {base.name} ({base.dataset.name}, tune: {len(dims)} dimension(s), "
              f"{spec.trials} trials, {spec.metric}; {_probe_count(base.dataset, {})})")
        return 0
    configs = expand_grid(args.config, args.set)
    loaded: dict[str, Any] = {}  # a sweep's variants mostly share one dataset
    noted: set[str] = set()  # embedded models checked (once for all the variants)
    for config in configs:
        answer = config.answer
        mode = "retrieval only" if answer is None else f"answers with {answer.llm.name}"
        print(f"ok: {config.name} ({config.dataset.name}, {mode}; "
              f"{_probe_count(config.dataset, loaded)})")
        if _records_identity(config.model_dump(mode="json")):  # a run's recorded config:
            from memlab.eval.config import resolved_dict  # warn of changed models/templates

            resolved_dict(config)
        tree = config.model_dump(mode="json")
        for model in dict.fromkeys(_st_models(tree)):
            if missing_folder(model) is not None:  # a note: train-embedder writes it
                print(f"  note: no model folder at {model!r} yet (`python -m memlab.eval "
                      "train-embedder CONFIG --only CASE` writes it)")
        for model in _embedded_models(tree):
            if model in noted:
                continue
            noted.add(model)
            if not model_available(model):  # a note: answers already cached still replay
                print(f"  note: the embedded model {model} is not installed here: every "
                      "answer not already in the cache will fail; install it with "
                      f"{install_command(catalog_model(model))}")
    return 0


def _records_identity(tree: Any) -> bool:
    """Whether a config tree holds a recorded ``identity`` (a model id, a template hash)."""
    if isinstance(tree, dict):
        return bool(tree.get("identity")) or any(_records_identity(v) for v in tree.values())
    return isinstance(tree, list) and any(_records_identity(v) for v in tree)


def _probe_count(spec: Any, loaded: dict[str, Any]) -> str:
    """Load the dataset ``spec`` names, as a run would but without its haystack padding
    (the option is checked, not built), and select its probes: a missing file, an unknown
    loader, a malformed record or a probe selection that matches nothing fails here, not
    after a run has started. ``loaded`` keeps the datasets already read."""
    from memlab.data.haystack import haystack_option
    from memlab.eval.select import select_probes

    params = dict(spec.params)
    if "haystack" in params:
        haystack_option(params.pop("haystack"))
    bare = spec.model_copy(update={"params": params})
    key = json.dumps(bare.model_dump(mode="json", exclude={"probes"}), sort_keys=True)
    if key not in loaded:
        loaded[key] = bare.load()
    dataset = loaded[key]
    total = sum(len(c.probes) for c in dataset)
    return f"{len(select_probes(dataset, spec.probes)):,} of {total:,} probes"


def _st_models(tree: Any) -> Iterator[str]:
    """Every sentence-transformers model named in a config tree."""
    for params in _params_of(tree, ("sentence-transformers", "st")):
        yield str(params.get("model", ""))


def _embedded_models(tree: Any) -> Iterator[str]:
    """Every embedded (catalog) model a ``llamacpp`` LLM in a config tree names; a known
    name only (an unknown one is a validation error already)."""
    from memlab.llm.models import DEFAULT_MODEL, ModelFileError, catalog_model

    for params in _params_of(tree, ("llamacpp",)):
        if params.get("model_path"):
            continue
        model = str(params.get("model") or DEFAULT_MODEL)
        try:
            catalog_model(model)
        except ModelFileError:
            continue
        yield model


def _params_of(tree: Any, names: tuple[str, ...]) -> Iterator[dict[str, Any]]:
    """The params of every component called one of ``names`` in a config tree."""
    if isinstance(tree, dict):
        params = tree.get("params")
        if tree.get("name") in names:
            yield params if isinstance(params, dict) else {}
        tree = list(tree.values())
    if isinstance(tree, list):
        for value in tree:
            yield from _params_of(value, names)


def cmd_compare(args: argparse.Namespace) -> int:
    from memlab.eval.compare import compare_pooled

    runs = [args.run_a, args.run_b, *args.more]
    if len(runs) % 2:
        raise ConfigError("compare takes run directories in pairs: A B [A2 B2 ...] "
                          f"(got {len(runs)})")
    pairs = list(zip(runs[::2], runs[1::2], strict=True))
    rows = compare_pooled(pairs, args.metric or None, by_category=args.by_category)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(f"B = {' + '.join(str(b) for _, b in pairs)}\n"
          f"A = {' + '.join(str(a) for a, _ in pairs)}\n")
    print(f"{'metric':<34} {'A':>7} {'B':>7} {'B-A':>8} {'95% CI':>18} {'wilcoxon p':>10} "
          f"{'perm. p':>8} {'n':>5} {'won':>4} {'lost':>4}")
    for r in rows:
        ci = "-" if r["ci_low"] is None else f"[{r['ci_low']:+.3f}, {r['ci_high']:+.3f}]"
        name = r["metric"] if r["category"] is None else f"  {r['category']}"
        print(f"{name:<34} {_f(r['mean_a']):>7} {_f(r['mean_b']):>7} "
              f"{_f(r['mean_diff'], '+.3f'):>8} {ci:>18} {_f(r['wilcoxon_p'], '.4f'):>10} "
              f"{_f(r['permutation_p'], '.4f'):>8} {r['n']:>5} {r['won']:>4} {r['lost']:>4}")
    unmatched = max((r["n_unmatched"] for r in rows if r["category"] is None), default=0)
    if unmatched:
        print(f"\nnote: {unmatched} probe(s) were scored by only one run of a pair and are "
              "not compared (n counts the probes both scored): the runs answered different "
              "probe sets")
    return 0


def cmd_crossfit(args: argparse.Namespace) -> int:
    from memlab.eval.crossfit import PART_WORDS, crossfit

    result = crossfit(args.runs, args.metric, lower_is_better=args.lower_is_better,
                      prefer=args.prefer, baseline=args.baseline,
                      part_words=args.part_words or PART_WORDS)
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    parts = result["parts"]
    better = "lower" if args.lower_is_better else "higher"
    print(f"{args.metric} ({better} is better), mean (n) per part of the split\n")
    width = max(len(c) for c in result["table"]) + 2
    print(f"{'cell':<{width}}" + "".join(f"{p:>18}" for p in [*parts, "all"]))
    for cell, row in result["table"].items():
        print(f"{cell:<{width}}" + "".join(
            f"{row[p]['mean']:>11.4f} ({row[p]['n']:>4})" for p in [*parts, "all"]))
    print()
    for choice in result["choices"]:
        print(f"{choice['part']}: {choice['chosen']} (chosen on the other parts: "
              f"{choice['on_other_parts']:.4f}); held out {choice['held_out']['mean']:.4f} "
              f"(n {choice['held_out']['n']})")
    fit, best = result["crossfit"], result["best_in_sample"]
    print(f"\ncross-fitted {args.metric}: {fit['mean']:.4f} [{fit['ci_low']:.4f}, "
          f"{fit['ci_high']:.4f}] (n {fit['n']}; 95 % bootstrap CI)")
    print(f"best cell chosen on every part at once (in-sample, optimistic): {best['cell']} "
          f"{best['mean']:.4f}")
    base = result["baseline"]
    if base is not None:
        ci = ("-" if base["ci_low"] is None
              else f"[{base['ci_low']:+.4f}, {base['ci_high']:+.4f}]")
        print(f"against {base['cell']} on the same probes: {base['mean_a']:.4f} -> "
              f"{base['mean_b']:.4f}, {base['mean_diff']:+.4f} {ci} ({base['won']} won, "
              f"{base['lost']} lost)")
    return 0


def cmd_agree(args: argparse.Namespace) -> int:
    from memlab.eval.agree import agreement, render_agreement

    result = agreement(args.sweep_a, args.sweep_b, args.metric, category_a=args.category_a,
                       category_b=args.category_b, seed=args.seed)
    print(json.dumps(result, indent=2) if args.json else render_agreement(result))
    return 0


def _run_depth(run_dir: Path) -> Any:
    """The search depth a run ranked to (max of k and depth in its resolved config)."""
    from memlab.files import read_yaml

    config = read_yaml(Path(run_dir) / "config.resolved.yaml")
    return max(config.get("k") or 0, config.get("depth") or 0) or "?"


def cmd_export(args: argparse.Namespace) -> int:
    """A run's answers in LongMemEval's hypothesis format: one JSON line per question,
    ``{"question_id", "hypothesis"}``, what its ``src/evaluation/evaluate_qa.py`` reads."""
    from memlab.eval.compare import run_items
    from memlab.eval.items import read_items

    run_items(args.run)  # a ConfigError naming the folder when it is not a run directory
    rows = read_items(args.run / "items.jsonl")
    answered = [r for r in rows if not r.get("error") and isinstance(r.get("answer"), str)]
    if not answered:
        raise ConfigError(f"{args.run}: no answered probe to export (a retrieval-only run, or "
                          "every answer failed)")
    failed = [r for r in rows if r.get("error")]  # judged wrong, not left out: the accuracy
    #                                               is over every question, as memlab's is
    out = Path(args.out)
    if out.exists() and not args.force:
        raise ConfigError(f"{out} exists; pass --force to replace it")
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", encoding="utf-8") as fh:
        for row in rows:
            hypothesis = "" if row.get("error") else row.get("answer")
            if isinstance(hypothesis, str):
                fh.write(json.dumps({"question_id": row["probe_id"], "hypothesis": hypothesis},
                                    ensure_ascii=False) + "\n")
    summary = json.loads((args.run / "metrics.json").read_text(encoding="utf-8")) \
        if (args.run / "metrics.json").exists() else {}
    dataset = summary.get("dataset", "?")
    print(f"wrote {out}: {len(answered) + len(failed)} hypotheses" + (
        f" ({len(failed)} of them empty: their answers failed, so the judge counts them "
        "wrong)" if failed else ""))
    if dataset != "longmemeval":
        print(f"note: the run's dataset is {dataset!r}, not LongMemEval: question_id is "
              "memlab's probe id, and LongMemEval's own judge (evaluate_qa.py) reads its "
              "questions from a LongMemEval file, so it cannot score these")
        return 0
    print("score them with LongMemEval's own judge (its repository, an OpenAI key or a local "
          f"model): python src/evaluation/evaluate_qa.py gpt-4o {out} "
          "data/longmemeval_oracle.json")
    return 0


def cmd_misses(args: argparse.Namespace) -> int:
    from memlab.eval.analysis import MISS_KINDS, miss_table, run_dataset, when_line
    from memlab.eval.compare import run_items
    from memlab.metrics.stats import value

    items = run_items(args.run)
    table = miss_table(items, args.metric, run_dataset(args.run) if args.dates else None)
    if args.json:
        print(table.to_json(orient="records", indent=2, date_format="iso"))
        return 0
    scored = sum(1 for row in items if not row.get("error") and value(row, args.metric) is not None)
    stored = max((len(row.get("retrieved", [])) for row in items), default=0)
    print(f"{len(table)} of {scored} probes miss {args.metric} ({args.run})")
    counts = table["kind"].value_counts()
    for kind in MISS_KINDS:
        if counts.get(kind):
            print(f"  {counts[kind]:>4}  {kind}")
    if all("evidence_ranks" in row for row in items if not row.get("error")):
        depth = _run_depth(args.run)
        hint = ("; re-run with a larger --set depth=N to rank deeper"
                if counts.get(MISS_KINDS[0]) else "")
        print(f"ranks are counted in each probe's ranking (at most the search depth, "
              f"{depth} units; '-': not in it{hint})\n")
    else:  # a run from before rows recorded their evidence ranks
        hint = ("; re-run with --set k=300 --set depth=300 to see deeper (retrieval only: "
                "on an answered run k is also what the reader is shown)"
                if counts.get(MISS_KINDS[0]) else "")
        print(f"ranks are counted in each probe's stored top {stored} units ('-': not in "
              f"it{hint})\n")
    width = max((len(str(c)) for c in table["category"]), default=0)  # names whole
    for row in table.itertuples():
        ranks = ", ".join("-" if r is None else str(r) for r in row.ranks)
        print(f"{row.category:<{width}} [{ranks}] {row.question}")
        if args.dates:
            print(f"{'':<{width}} {when_line(row)}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from memlab.eval.report import plot_report, report, to_markdown, unfinished_runs

    table = report(args.runs, metric=args.metric, by_category=args.by_category)
    left = unfinished_runs(args.runs)
    if left:
        print(f"note: {len(left)} unfinished run(s) left out (no metrics.json; re-running a "
              f"run's command with --out DIR finishes it): "
              + ", ".join(map(str, left[:3])) + (" ..." if len(left) > 3 else ""),
              file=sys.stderr)
    if table.empty:
        raise MemlabError(f"no run directories (holding metrics.json) under "
                          f"{', '.join(map(str, args.runs))}")
    if args.markdown:
        print(to_markdown(table, [c for c in table.columns if c not in ("dir", "dataset")]))
    else:
        print(table.to_string(index=False))
    if args.plot:
        metric = args.metric[0] if args.metric else "locomo_f1"
        print(f"plot: {plot_report(table, args.plot, metric)}")
    return 0


def cmd_cache(args: argparse.Namespace) -> int:
    from memlab.eval.cache_admin import (
        cache_report,
        compact_embeddings,
        drop_embeddings,
        drop_folder,
        format_report,
        human,
    )

    verb = "deleted" if args.yes else "would delete (add --yes)"
    if args.drop_embeddings:
        matched, deleted = drop_embeddings(args.drop_embeddings, apply=args.yes)
        for model, rows in matched:
            print(f"{verb}: {rows:,} vectors of {model}")
        if args.yes:
            print(f"{deleted:,} vectors deleted; `cache --compact` gives their space back")
    for name in args.drop:
        print(f"{verb}: {name}/ ({human(drop_folder(name, apply=args.yes))})")
    if args.compact:
        print("compacting embeddings.sqlite (7 GB took 3 min on a 2-core test machine) ...",
              file=sys.stderr, flush=True)
        before, after = compact_embeddings()
        print(f"embeddings.sqlite compacted: {human(before)} -> {human(after)}")
    report = cache_report()
    print(json.dumps(report, indent=2) if args.json else format_report(report))
    return 0


def cmd_log(args: argparse.Namespace) -> int:
    from memlab.eval.report import find_runs
    from memlab.eval.tracking import log_run, logged_as

    runs = find_runs(args.runs)
    if not runs:
        raise MemlabError(f"no run directories (holding metrics.json) under "
                          f"{', '.join(map(str, args.runs))}")
    sweep = uuid.uuid4().hex if args.sweep else None
    for run_dir in runs:
        before = None if args.again else logged_as(run_dir, args.tracking_uri)
        if before is not None:
            print(f"{run_dir}: already logged as MLflow run {before} (--again logs it once "
                  "more)")
            continue
        try:
            run_id = log_run(run_dir, pareto=run_dir == runs[-1], uri=args.tracking_uri,
                             traces=args.traces, sweep=sweep)
        except MemlabError:
            raise
        except Exception as exc:  # MLflow's own errors: one line naming the run
            raise MemlabError(f"{run_dir}: logging to MLflow failed ({type(exc).__name__}: "
                              f"{exc})") from exc
        print(f"{run_dir}: MLflow run {run_id}")
    return 0


def cmd_judge_check(args: argparse.Namespace) -> int:
    from memlab.data import load_dataset
    from memlab.eval.judge_check import default_template, judge_check, parse_judge, render_check

    template = args.template or default_template(args.dataset)
    judge = parse_judge(args.judge, template)
    dataset = load_dataset(args.dataset, path=args.dataset_path)
    result = judge_check(judge, dataset, per_type=args.per_type, seed=args.seed,
                         split=args.split, threshold=args.threshold)
    if args.out:
        args.out.write_text(json.dumps(result, indent=2, default=str) + "\n", encoding="utf-8")
    print(json.dumps(result, indent=2, default=str) if args.json else render_check(result))
    if result.get("call_errors") and not result["n"]:
        raise MemlabError(f"the judge answered none of the {result['call_errors']} labelled "
                          f"cases: {result.get('first_call_error')}")
    return 0


def cmd_rejudge(args: argparse.Namespace) -> int:
    from memlab.eval.judge_check import parse_judge
    from memlab.eval.rejudge import default_judge_template, rejudge
    from memlab.eval.summary import render_table

    template = args.template or default_judge_template(args.run_dir)
    result = rejudge(args.run_dir, parse_judge(args.judge, template), out=args.out,
                     track=not args.no_mlflow)
    print(render_table(result.summary, f"\n{result.config.name} (re-judged)"))
    print(f"\nrun directory: {result.run_dir}")
    return 0


def cmd_rescore(args: argparse.Namespace) -> int:
    from memlab.eval.rejudge import rescore
    from memlab.eval.summary import render_table

    result = rescore(args.run_dir, args.scorer, out=args.out, track=not args.no_mlflow)
    print(render_table(result.summary, f"\n{result.config.name} (re-scored)", args.scorer))
    print(f"\nrun directory: {result.run_dir}")
    return 0


def cmd_ls(args: argparse.Namespace) -> int:
    from memlab.components import describe
    from memlab.plugins import import_plugins
    from memlab.prompts.library import BUILTIN_DIR, TemplateLibrary

    import_plugins(args.plugin, "--plugin")
    rows = describe(args.kinds or None)
    at = next((i for i, row in enumerate(rows) if row["kind"] == "template"), None)
    if args.template_dir and at is not None:  # as a config's template_dirs: makes them
        rows = [row for row in rows if row["kind"] != "template"]
        rows[at:at] = [{**row, "kind": "template"}
                       for row in TemplateLibrary(args.template_dir).describe()]
    if args.json:
        print(json.dumps(rows, indent=2, default=repr))
        return 0
    kind = None
    for row in rows:
        if row["kind"] != kind:
            kind = row["kind"]
            print(f"\n{kind}")
        params = ", ".join(_param(p) for p in row["params"])
        if kind == "template" and args.template_dir and \
                not Path(row["path"]).is_relative_to(BUILTIN_DIR):
            params = f"({row['path']})"
        print(f"  {row['name']:<22} {params}")
        if row["summary"]:
            print(f"  {'':<22} {row['summary']}")
    return 0


def cmd_conform(args: argparse.Namespace) -> int:
    from memlab.files import parse_yaml
    from memlab.plugins import import_plugins
    from memlab.testing.conformance import check_component

    import_plugins(args.plugin, "--plugin")
    params = parse_yaml(args.params, "--params") if args.params else {}
    if not isinstance(params, dict):
        raise MemlabError(f"--params: a mapping of parameters, e.g. '{{k: 5}}'; got "
                          f"{args.params!r}")
    passed = check_component(args.kind, {"name": args.name, "params": params},
                             call=not args.spec_only)
    print(f"{args.kind} '{args.name}' conforms: {', '.join(passed)}")
    return 0


def _param(p: dict[str, Any]) -> str:
    return p["name"] if p["required"] else f"{p['name']}={p['default']!r}"


def _executor(args: argparse.Namespace) -> Any:
    """``--executor ray``: an entered RayExecutor for the command's duration; else none."""
    ray_only = {"--address": args.address, "--shard-size": args.shard_size,
                "--task-cpus": args.task_cpus, "--task-gpus": args.task_gpus,
                "--task-resources": args.task_resources, "--retries": args.retries}
    if args.executor == "local":
        given = [flag for flag, value in ray_only.items() if value is not None]
        if given:
            raise MemlabError(f"{', '.join(given)} {'needs' if len(given) == 1 else 'need'} "
                              "--executor ray (the local executor would ignore it)")
        return nullcontext()
    from memlab.eval.ray_executor import RayExecutor

    resources = None
    if args.task_resources:
        try:
            resources = json.loads(args.task_resources)
        except json.JSONDecodeError as exc:
            raise MemlabError(f"--task-resources: not JSON ({exc.msg} at column "
                              f"{exc.colno}): {args.task_resources!r}; e.g. "
                              "'{\"llm\": 1}'") from None
    chosen = {key: value for key, value in (
        ("shard_size", args.shard_size), ("task_cpus", args.task_cpus),
        ("task_gpus", args.task_gpus), ("retries", args.retries)) if value is not None}
    return RayExecutor(address=args.address, resources=resources, **chosen)


def _f(value: float | None, fmt: str = ".3f") -> str:
    return "-" if value is None else format(value, fmt)


def _add_run_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("config", type=Path, help="experiment YAML (see experiments/)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. --set retrieval.params.k=5")
    p.add_argument("--out", type=Path, help="run directory (re-use one to resume it)")
    p.add_argument("--workers", type=int, help="processes over conversations")
    p.add_argument("--no-mlflow", action="store_true", help="do not log to MLflow")
    p.add_argument("--retry-errors", dest="retry_errors", action="store_true",
                   help="resuming --out: run the probes that failed (LLM errors) again")
    p.add_argument("--executor", choices=("local", "ray"), default="local",
                   help="where conversations are replayed: this machine (default) or Ray")
    p.add_argument("--address", help="Ray cluster: auto, HOST:PORT or ray://HOST:10001 "
                   "(default: $RAY_ADDRESS, else a local Ray started for the command)")
    p.add_argument("--shard-size", type=int,
                   help="Ray: conversations per task (default 1)")
    p.add_argument("--task-cpus", type=float, help="Ray: CPUs per task (default 1)")
    p.add_argument("--task-gpus", type=float, help="Ray: GPUs per task (default 0)")
    p.add_argument("--task-resources", metavar="JSON",
                   help='Ray: custom resources per task, e.g. \'{"llm": 1}\'')
    p.add_argument("--retries", type=int,
                   help="Ray: retries of a task whose worker died (default 3)")


def _training_arguments(parser: argparse.ArgumentParser, case_help: str,
                        learning_rate: float) -> None:
    """The arguments train-reranker and train-embedder share: the case and the optimiser."""
    parser.add_argument("config", type=Path, help="experiment YAML")
    parser.add_argument("--only", metavar="LABEL", help="the grid case (needed when there "
                        f"are several); {case_help}")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--batch-size", dest="batch_size", type=int, default=16)
    parser.add_argument("--learning-rate", dest="learning_rate", type=float,
                        default=learning_rate)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m memlab.eval",
        description="Replay conversation datasets through a memory configuration and score it.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run one experiment config")
    _add_run_options(run)
    run.add_argument("--repeats", type=int, metavar="N",
                     help="N runs, the answer model's seed varied (seed, seed + 1, ...): "
                          "each metric's mean, sd, min and max over them")
    run.set_defaults(func=cmd_run)
    sw = sub.add_parser("sweep", help="run every combination of a config's grid")
    _add_run_options(sw)
    sw.add_argument("--only", action="append", default=[], metavar="LABEL",
                    help="run only this grid case (repeat for more; they run in the order "
                         "given); LABEL as in the run name's [...], or some of its "
                         "comma-separated parts (a case's label: all of its variants)")
    sw.set_defaults(func=cmd_sweep)
    tn = sub.add_parser("tune", help="search the config's tune.space on dev conversations, "
                        "score the best on the test conversations")
    tn.add_argument("config", type=Path, help="experiment YAML with a tune: section")
    tn.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    tn.add_argument("--out", type=Path, help="tune directory (default runs/NAME/tune; "
                    "re-using one resumes its study)")
    tn.add_argument("--trials", type=int, help="total completed trials (default tune.trials)")
    tn.add_argument("--no-mlflow", action="store_true", help="do not log to MLflow")
    tn.add_argument("--quiet", action="store_true", help="no progress bars")
    tn.set_defaults(func=cmd_tune)
    tr = sub.add_parser("train-reranker", help="train a cross_encoder case's model on the "
                        "part of its probe split it does not score")
    _training_arguments(tr, "its retrieval is cross_encoder, its probes one part of a split",
                        learning_rate=5e-5)
    tr.add_argument("--out", type=Path, help="model folder (default: the case's model)")
    tr.add_argument("--negatives", type=int, default=10,
                    help="hard negatives per probe from the base's top_n (default 10)")
    tr.set_defaults(func=cmd_train_reranker)
    te = sub.add_parser("train-embedder", help="fine-tune the sentence-transformers embedder "
                        "a case's retrieval loads from a local folder, on the part of its "
                        "probe split it does not score")
    _training_arguments(te, "its probes are one part of a split", learning_rate=2e-5)
    te.add_argument("--model", help="which embedder folder to train (needed when the "
                    "retrieval names several)")
    te.add_argument("--top-n", dest="top_n", type=int, default=40,
                    help="hits per probe the hard negatives come from (default 40)")
    te.add_argument("--negatives", type=int, default=3,
                    help="hard negatives beside each positive (default 3)")
    te.add_argument("--mini-batch", dest="mini_batch", type=int, metavar="TEXTS",
                    help="cache gradients: encode TEXTS texts at a time with a graph (the "
                         "same step in far less memory, one more forward pass; default: "
                         "the whole batch at once)")
    te.add_argument("--mine-with", dest="mine_with", metavar="FOLDER",
                    help="mine the hard negatives with this model (one train-embedder wrote "
                         "on the same part of the split) instead of the bundled MiniLM")
    te.set_defaults(func=cmd_train_embedder)
    sc = sub.add_parser("scale", help="the config's strategies at several history lengths "
                        "(haystacks padded with other conversations' sessions)")
    sc.add_argument("config", type=Path, help="experiment YAML (its grid: the strategies)")
    sc.add_argument("--tokens", required=True, help="history lengths in Qwen tokens, "
                    "e.g. 10k,30k,115k")
    sc.add_argument("--metric", action="append", help="metric(s) to tabulate and plot "
                    "(default session.recall_any@5 and session.recall_all@5)")
    sc.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    sc.add_argument("--out", type=Path, help="output directory (default runs/NAME/scale)")
    sc.add_argument("--seed", type=int, help="distractor draw (default the config's, else 0)")
    sc.add_argument("--no-mlflow", action="store_true", help="do not log to MLflow")
    sc.add_argument("--quiet", action="store_true", help="no progress bars")
    sc.set_defaults(func=cmd_scale)
    val = sub.add_parser("validate", help="check a config (and its grid) without running it")
    val.add_argument("config", type=Path)
    val.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    val.set_defaults(func=cmd_validate)
    cmp = sub.add_parser("compare", help="paired comparison of two run directories (or "
                         "of several pairs pooled: A1 B1 A2 B2 ..., cross-fitting)")
    cmp.add_argument("run_a", type=Path)
    cmp.add_argument("run_b", type=Path)
    cmp.add_argument("more", nargs="*", type=Path, metavar="RUN",
                     help="more A B pairs, pooled with the first (each on its own probes)")
    cmp.add_argument("--by-category", action="store_true",
                     help="also compare each probe category")
    cmp.add_argument("--metric", action="append", help="metric(s) to compare")
    cmp.add_argument("--json", action="store_true")
    cmp.set_defaults(func=cmd_compare)
    cfit = sub.add_parser("crossfit", help="each part of a split (folds, or dev and test) "
                        "scored with the grid cell chosen on the other parts; the pooled, "
                        "cross-fitted number")
    cfit.add_argument("runs", nargs="+", type=Path, metavar="RUN",
                    help="sweep directories (or run directories): every cell on every part")
    cfit.add_argument("--metric", default="session.recall_all@5",
                    help="the metric to choose by and report (default session.recall_all@5)")
    cfit.add_argument("--lower-is-better", action="store_true")
    cfit.add_argument("--prefer", metavar="CELL", help="ties go to this cell (say, the "
                    "configuration as it was)")
    cfit.add_argument("--baseline", metavar="CELL", help="also compare the cross-fitted "
                    "rows with this cell's, probe by probe")
    cfit.add_argument("--part-words", metavar="REGEX", help="the words of a grid label that "
                    "name the part (default: fold1, fold=1, dev, test, part=dev)")
    cfit.add_argument("--json", action="store_true")
    cfit.set_defaults(func=cmd_crossfit)
    agr = sub.add_parser("agree", help="do two sweeps (the same grid on two probe sets) "
                         "rank the configurations alike? Kendall tau with its CI")
    agr.add_argument("sweep_a", type=Path, help="the reference sweep (its run directories)")
    agr.add_argument("sweep_b", type=Path, help="the same grid on the other probe set")
    agr.add_argument("--metric", default="turn.budget_evidence_recall@1000")
    agr.add_argument("--category-a", help="only A's probes of this category")
    agr.add_argument("--category-b", help="only B's probes of this category")
    agr.add_argument("--seed", type=int, default=0, help="seed of the resampling")
    agr.add_argument("--json", action="store_true")
    agr.set_defaults(func=cmd_agree)
    mis = sub.add_parser("misses", help="the probes a run misses, with the ranks of their "
                         "evidence (how far each miss is)")
    mis.add_argument("run", type=Path, help="a run directory")
    mis.add_argument("--metric", default="session.recall_all@5",
                     help="LEVEL.recall_all@K, LEVEL.recall_any@K, "
                          "LEVEL.budget_evidence_recall@B or LEVEL.budget_recall_any@B "
                          "(default session.recall_all@5)")
    mis.add_argument("--dates", action="store_true",
                     help="also show when: asked_at, the time the question names (as "
                          "time_aware reads it) and each evidence item's date and rank "
                          "(loads the run's dataset)")
    mis.add_argument("--json", action="store_true")
    mis.set_defaults(func=cmd_misses)
    exp = sub.add_parser("export", help="a run's answers in LongMemEval's hypothesis format "
                         "(for its own evaluate_qa.py judge)")
    exp.add_argument("run", type=Path, help="a run directory with answers")
    exp.add_argument("--out", type=Path, required=True, help="JSON Lines file to write")
    exp.add_argument("--format", choices=("longmemeval",), default="longmemeval",
                     help="longmemeval: {question_id, hypothesis} per line (default)")
    exp.add_argument("--force", action="store_true", help="replace an existing --out file")
    exp.set_defaults(func=cmd_export)
    rep = sub.add_parser("report", help="table of finished runs (run directories)")
    rep.add_argument("runs", nargs="+", type=Path, help="run directories or folders of them")
    rep.add_argument("--metric", action="append", help="metric(s) to show")
    rep.add_argument("--by-category", metavar="METRIC", help="add METRIC per category")
    rep.add_argument("--markdown", action="store_true", help="print a markdown table")
    rep.add_argument("--plot", metavar="PNG", type=Path,
                     help="also plot the first --metric (default locomo_f1) against prompt "
                          "tokens per probe (memory tokens for retrieval-only runs), one "
                          "point per run, with the Pareto front")
    rep.set_defaults(func=cmd_report)
    log = sub.add_parser("log", help="mirror finished run directories to MLflow (again)")
    log.add_argument("runs", nargs="+", type=Path, help="run directories or folders of them")
    log.add_argument("--tracking-uri", help="default: the run's config, "
                     "$MLFLOW_TRACKING_URI, or mlflow.db in the project")
    log.add_argument("--traces", help="traces per probe: auto, on, off or 'sample N' "
                     "(default: the run's tracking.traces)")
    log.add_argument("--sweep", action="store_true",
                     help="log the runs as one sweep: children of one parent run")
    log.add_argument("--again", action="store_true",
                     help="also log runs the experiment already holds (a second copy each)")
    log.set_defaults(func=cmd_log)
    _add_judge_commands(sub)
    ca = sub.add_parser("cache", help="what memlab's cache holds (embeddings by model, LLM "
                        "responses, indexes, models); drop what is no longer needed")
    ca.add_argument("--drop-embeddings", action="append", default=[], metavar="GLOB",
                    help="the cached vectors of every embedding model whose id matches, e.g. "
                         "'*trained-on-dev*' (repeatable; a dry run without --yes)")
    ca.add_argument("--drop", action="append", default=[], choices=("faiss", "onnx"),
                    help="a folder memlab rebuilds when missing (a dry run without --yes)")
    ca.add_argument("--compact", action="store_true",
                    help="move vectors of the first layout into the current one and give "
                         "freed space back (SQLite VACUUM: needs free disk about the size of "
                         "what remains; run it while nothing else uses the cache)")
    ca.add_argument("--yes", action="store_true", help="really delete what --drop* names")
    ca.add_argument("--json", action="store_true", help="the report as JSON")
    ca.set_defaults(func=cmd_cache)
    ls = sub.add_parser("ls", help="list every registered component with its parameters")
    ls.add_argument("kinds", nargs="*", help="only these kinds (chunker, retrieval, ...)")
    ls.add_argument("--json", action="store_true", help="machine-readable output")
    ls.add_argument("--plugin", action="append", default=[], metavar="MODULE",
                    help="import a plugin first (a module name or a .py file; also "
                    "MEMLAB_PLUGINS, or a config's plugins: list)")
    ls.add_argument("--template-dir", action="append", default=[], metavar="DIR",
                    help="also list the templates in DIR, searched before the built-ins "
                    "as a config's template_dirs: list is (its own are shown with their file)")
    ls.set_defaults(func=cmd_ls)
    cf = sub.add_parser("conform", help="check that a component (one's own, from a plugin) "
                        "behaves as its kind must: spec round trip, no future leakage, "
                        "deterministic hits, the output contracts")
    cf.add_argument("kind", choices=("chunker", "embedder", "store", "retrieval", "memory",
                                     "llm", "scorer"), help="the component's kind")
    cf.add_argument("name", help="its registered name")
    cf.add_argument("--params", metavar="YAML", help="its parameters, e.g. '{k: 5}'")
    cf.add_argument("--plugin", action="append", default=[], metavar="MODULE",
                    help="import a plugin first (a module name or a .py file)")
    cf.add_argument("--spec-only", action="store_true", help="only the spec checks (no "
                    "calls: for an LLM or embedder whose server is not running)")
    cf.set_defaults(func=cmd_conform)
    return parser


def _add_judge_commands(sub: Any) -> None:
    judge_help = ("a catalog model (qwen2.5-coder-1.5b), a .gguf path, a backend name, or "
                  "YAML: '{name: ollama, params: {model: qwen3:4b}}'")
    jc = sub.add_parser("judge-check", help="measure a judge's agreement with known labels")
    jc.add_argument("--judge", required=True, metavar="SPEC", help=judge_help)
    jc.add_argument("--template", help="judge template (default: the dataset's)")
    jc.add_argument("--dataset", default="longmemeval", help="dataset the cases come from")
    jc.add_argument("--dataset-path", help="file of the dataset (default: where memlab finds it)")
    jc.add_argument("--per-type", type=int, default=2, help="probes per question type")
    jc.add_argument("--seed", type=int, default=0, help="draw of the labelled probes")
    jc.add_argument("--split", choices=("all", "dev", "heldout"), default="all",
                    help="conversations the cases come from: develop a judge on dev, report "
                         "it on heldout (LoCoMo dev: conv-26, -30, -41, -42, -43; elsewhere "
                         "a fixed hash half)")
    jc.add_argument("--threshold", type=float, default=0.9, help="warn below this agreement")
    jc.add_argument("--out", type=Path, help="also write the full result (with cases) as JSON")
    jc.add_argument("--json", action="store_true")
    jc.set_defaults(func=cmd_judge_check)
    rj = sub.add_parser("rejudge", help="judge a finished run's answers again, as a new run")
    rj.add_argument("run_dir", type=Path)
    rj.add_argument("--judge", required=True, metavar="SPEC", help=judge_help)
    rj.add_argument("--template", help="judge template (default: the run's)")
    rj.add_argument("--out", type=Path, help="new run directory")
    rj.add_argument("--no-mlflow", action="store_true")
    rj.set_defaults(func=cmd_rejudge)
    rs = sub.add_parser("rescore", help="score a finished run's answers again, as a new run")
    rs.add_argument("run_dir", type=Path)
    rs.add_argument("--scorer", action="append", required=True,
                    help="a scorer name (repeat the flag for several: --scorer bleu1 "
                    "--scorer abstention)")
    rs.add_argument("--out", type=Path, help="new run directory")
    rs.add_argument("--no-mlflow", action="store_true")
    rs.set_defaults(func=cmd_rescore)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        with _plain_warnings():
            return func(args)
    except MemlabError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        import signal

        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C: no traceback now
        print(f"\ninterrupted{_saved_so_far(args)}", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `... | head` stopped reading: not an error of ours
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


def _saved_so_far(args: argparse.Namespace) -> str:
    """What an interrupted command kept: the run directory it was writing, its finished
    rows (written durably as conversations finish), and how to resume."""
    from memlab.eval.run import OPENED

    if not OPENED:
        return ""
    where = OPENED[-1]
    try:
        with (where / "items.jsonl").open("rb") as fh:
            rows = sum(1 for line in fh if line.endswith(b"\n"))
    except OSError:
        rows = 0
    again = {"run": "the same command resumes it" if getattr(args, "out", None) else
             f"the same command with --out {where} resumes it",
             "sweep": "the same sweep command resumes it (finished cases are kept)"
             if getattr(args, "out", None) else "a sweep given --out DIR resumes when run "
             "again; this one wrote each case to its own timestamped directory"}
    hint = again.get(str(getattr(args, "command", "")), "")
    return (f": {rows} finished probe rows are saved in {where}"
            + (f"; {hint}" if hint else ""))


@contextmanager
def _plain_warnings() -> Iterator[None]:
    """memlab's own warnings as ``warning: ...`` lines on stderr (not Python's file:line
    form with a source excerpt); other libraries' warnings as Python shows them."""
    import warnings

    shown = warnings.showwarning

    def show(message: Warning | str, category: type[Warning], filename: str, lineno: int,
             file: Any = None, line: str | None = None) -> None:
        if issubclass(category, MemlabWarning):
            print(f"warning: {message}", file=sys.stderr)
        else:
            shown(message, category, filename, lineno, file, line)

    warnings.showwarning = show
    try:
        yield
    finally:
        warnings.showwarning = shown

