"""``python -m memlab.data``: dataset statistics, and probes for chats that have none.

``stats`` with no arguments loads every dataset it can find: the committed synthetic set
and the public benchmark files under ``../shared/datasets`` (or ``$MEMLAB_DATASETS``).
``NAME=PATH`` loads a specific file with a named loader.

``probes SOURCE --out FILE`` asks an LLM for recall questions about each session of
SOURCE (``NAME`` or ``NAME=PATH``) and writes SOURCE with them as a memlab file
(:mod:`memlab.data.probegen`), plus ``FILE.report.json`` (calls, tokens, seconds, drops).

``convert SOURCE --out FILE`` writes SOURCE (any loader, with its options: a haystack too)
as a memlab file, losslessly, the loader's reported issues kept in it: one format to edit,
subset (``--conversation``) or hand to another tool.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path
from typing import Any

from memlab.data import load_dataset, registry
from memlab.data.paths import SYNTHETIC_DEFAULT, benchmark_file
from memlab.errors import MemlabError

#: Datasets loaded when none are named, if their files exist.
DEFAULTS: list[tuple[str, Path]] = [
    ("synthetic", SYNTHETIC_DEFAULT),
    ("locomo", benchmark_file("locomo10.json")),
    ("longmemeval", benchmark_file("longmemeval_oracle.json")),
]


def dataset_stats(specs: list[tuple[str, Path]], options: dict[str, Any] | None = None,
                  issues: bool = False) -> list[dict[str, Any]]:
    """Load each ``(loader name, path)`` (with the loader ``options``, e.g. OMI's
    ``probes_path``) and return its statistics with load time (and, with ``issues``, what
    the loader repaired, dropped or kept, one mapping each)."""
    rows = []
    for name, path in specs:
        start = time.perf_counter()
        dataset = load_dataset(name, path=path, **(options or {}))
        stats = dataset.stats()
        stats["loader"] = name
        stats["path"] = str(path)
        stats["load_seconds"] = round(time.perf_counter() - start, 3)
        if issues:
            stats["issues"] = [dataclasses.asdict(i) for i in dataset.issues]
        rows.append(stats)
    return rows


def _option(text: str) -> tuple[str, Any]:
    """``KEY=VALUE`` of a loader option, the value read as YAML (argparse type)."""
    from memlab.errors import ConfigError
    from memlab.files import parse_yaml

    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        return key, parse_yaml(value, "the value")
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _parse_spec(text: str) -> tuple[str, Path]:
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"expected NAME=PATH, got {text!r}")
    name, path = _source(text)
    assert path is not None
    return name, path


def _source(text: str) -> tuple[str, Path | None]:
    """``NAME`` or ``NAME=PATH`` of a registered loader (argparse type)."""
    name, sep, path = text.partition("=")
    if name not in registry:
        raise argparse.ArgumentTypeError(
            f"unknown loader {name!r}; choose one of {', '.join(registry.names())}"
        )
    return name, Path(path) if sep else None


def _probes(args: argparse.Namespace) -> int:
    from memlab.data.loaders.native import save_native
    from memlab.data.probegen import generate_probes
    from memlab.llm.models import parse_llm

    out = Path(args.out)
    report_path = out.with_name(out.name + ".report.json")
    refused = _out_path(out, args.force)
    if refused:
        print(f"error: {refused}", file=sys.stderr)
        return 2
    name, path = args.source
    dataset = load_dataset(name, path=path, **dict(args.option))
    generated, report = generate_probes(
        dataset, parse_llm(args.llm) if args.llm else None, per_session=args.per_session,
        max_sessions=args.max_sessions, conversations=args.conversations, seed=args.seed,
        asked_at=args.asked_at, keep_probes=args.keep_probes, grounding=args.grounding,
        min_chars=args.min_chars, max_chars=args.max_chars,
        roles=[r.strip() for r in args.roles.split(",") if r.strip()],
        structured=args.structured, cache="off" if args.no_cache else "readwrite",
        progress=not args.quiet)
    if not report.sessions:
        print(f"error: no session to write questions about: {report.skipped_sessions} "
              f"session(s) are empty or under --min-chars {report.min_chars} characters "
              "(lower it, e.g. --min-chars 0); nothing written", file=sys.stderr)
        return 1
    if report.calls and len(report.errors) == report.calls:
        print(f"error: every LLM call failed ({report.calls}); first: {report.errors[0]}",
              file=sys.stderr)
        return 1
    save_native(generated, out)
    report_path.write_text(json.dumps(report.as_dict(), indent=2) + "\n")
    if report.kept == 0:
        print("warning: no proposal was kept (the dropped counts say why; each is an issue "
              "in the file)", file=sys.stderr)
    if args.json:
        print(json.dumps(report.as_dict(), indent=2))
    else:
        print(report.render())
        print(f"wrote {out} and {report_path}; score it with dataset "
              f"{{name: memlab, params: {{path: {out}}}}}")
    return 0


def _out_path(out: Path, force: bool) -> str | None:
    """Why ``out`` cannot be written (None if it can)."""
    if out.suffix not in (".json", ".jsonl"):
        return f"{out}: write a .json or .jsonl file (memlab's format)"
    if out.exists() and not force:
        return f"{out} exists; pass --force to replace it"
    return None


def _convert(args: argparse.Namespace) -> int:
    from memlab.data.loaders.native import save_native

    out = Path(args.out)
    refused = _out_path(out, args.force)
    if refused:
        print(f"error: {refused}", file=sys.stderr)
        return 2
    name, path = args.source
    options = dict(args.option)
    if path is not None and "path" in options:
        print(f"error: the path is given twice: {name}={path} and --option path=...",
              file=sys.stderr)
        return 2
    dataset = load_dataset(name, **({} if path is None else {"path": path}), **options)
    if args.conversation:
        wanted = [c.strip() for item in args.conversation for c in item.split(",") if c.strip()]
        have = {c.id for c in dataset.conversations}
        unknown = [c for c in wanted if c not in have]
        if unknown:
            print(f"error: no conversation {', '.join(map(repr, unknown))} in {name} (it has "
                  f"{len(have)}: {', '.join(sorted(have)[:8])}{', ...' if len(have) > 8 else ''})",
                  file=sys.stderr)
            return 2
        keep = set(wanted)
        dataset = dataclasses.replace(
            dataset, conversations=tuple(c for c in dataset.conversations if c.id in keep),
            issues=tuple(i for i in dataset.issues if i.conversation_id in keep))
    try:
        save_native(dataset, out)
    except MemlabError as exc:
        print(f"error: {exc}{_refused_because(dataset, args.source, options)}",
              file=sys.stderr)
        return 2
    stats = dataset.stats()
    print(f"wrote {out}: {stats['conversations']} conversations, {stats['sessions']} "
          f"sessions, {stats['turns']} turns, {stats['probes']} probes, "
          f"{len(dataset.issues)} reported issues kept; load it with dataset "
          f"{{name: memlab, params: {{path: {out}}}}}")
    return 0


def _refused_because(dataset: Any, source: tuple[str, Any], options: dict[str, Any]) -> str:
    """Why memlab's file format refused what a loader read: a haystack's interleaved
    sessions, or issues the loader keeps (turns out of time order); "" otherwise."""
    if "haystack" in options:
        return ("; a haystack placed another conversation's session inside one of this "
                "one's, which memlab's file format refuses (turns in time order): `scale` "
                "pads in memory instead")
    kept = [i for i in dataset.issues if i.action.startswith("kept")]
    if not kept:
        return ""
    name, path = source
    return (f"; the source ({name}{'=' + str(path) if path else ''}) loaded with "
            f"{len(kept)} issue(s) its loader keeps but memlab's file format refuses "
            f"({'; '.join(sorted({i.action for i in kept}))}): the first is "
            f"{kept[0].record} {kept[0].field!r}. Fix it in the source")


def _render(rows: list[dict[str, Any]]) -> str:
    headers = ["dataset", "conversations", "sessions", "turns", "probes", "abstention_probes",
               "repaired_or_dropped", "first_session", "last_session", "load_seconds"]
    table = [[_cell(r[h]) for h in headers] for r in rows]
    widths = [max(len(h), *(len(row[i]) for row in table)) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in table]
    for r in rows:
        cats = ", ".join(f"{k} {v}" for k, v in r["categories"].items())
        lines.append(f"\n{r['dataset']} probes by category: {cats}")
        if "issues" in r:
            lines.append(f"{r['dataset']} issues ({len(r['issues'])}):" if r["issues"]
                         else f"{r['dataset']} issues: none")
            lines += [f"  {i['conversation_id']} {i['record']} {i['field']!r}: {i['action']}"
                      f" ({i['value']!r})" for i in r["issues"]]
    return "\n".join(lines)


def _cell(value: Any) -> str:
    if hasattr(value, "date"):
        return value.date().isoformat()
    return "-" if value is None else str(value)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m memlab.data", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    stats = sub.add_parser("stats", help="load datasets and print their statistics")
    stats.add_argument("datasets", nargs="*", type=_parse_spec, metavar="NAME=PATH",
                       help="datasets to load (default: every known dataset that exists)")
    stats.add_argument("--json", action="store_true", help="print JSON instead of a table")
    stats.add_argument("--issues", action="store_true", help="list what each loader repaired, "
                       "dropped or kept (the repaired_or_dropped column counts them all)")
    option_help = ("a loader option, e.g. probes_path=probes.jsonl or conversation_timeout="
                   "300 for omi (repeatable; the value is read as YAML)")
    stats.add_argument("--option", action="append", type=_option, default=[],
                       metavar="KEY=VALUE", help=option_help)
    probes = sub.add_parser("probes", help="write recall probes for a dataset's sessions with "
                            "an LLM (for chats that have no questions)")
    probes.add_argument("source", type=_source, metavar="NAME[=PATH]",
                        help="the dataset: a loader name, with its file after '='")
    probes.add_argument("--out", required=True, help="memlab file to write (.json or .jsonl)")
    probes.add_argument("--option", action="append", type=_option, default=[],
                        metavar="KEY=VALUE", help=option_help)
    probes.add_argument("--llm", help="a catalog model (qwen2.5-coder-1.5b), a .gguf path, a "
                        "backend name, or YAML '{name: ollama, params: {model: qwen3:4b}}' "
                        "(default: the embedded 0.5B)")
    probes.add_argument("--per-session", type=int, default=2, help="questions a session (2)")
    probes.add_argument("--max-sessions", type=int, help="sessions sampled per conversation")
    probes.add_argument("--conversations", type=int, help="only the first N conversations")
    probes.add_argument("--seed", type=int, default=0, help="seed of the session sample")
    probes.add_argument("--asked-at", choices=("end", "session"), default="end",
                        help="ask after the whole history (end) or right after the session")
    probes.add_argument("--keep-probes", action="store_true",
                        help="keep the dataset's own probes beside the generated ones")
    probes.add_argument("--grounding", type=float, default=0.6, help="share of the answer's "
                        "content words that must occur in its cited turns (0.6)")
    probes.add_argument("--min-chars", type=int, default=200,
                        help="skip sessions with shorter transcripts (200)")
    probes.add_argument("--max-chars", type=int, default=12000,
                        help="ask about longer sessions in parts of this many characters "
                             "(12000, ~3k tokens)")
    probes.add_argument("--roles", default="user,other",
                        help="roles a probe's evidence must include (user,other: what "
                             "people said; add assistant for what the assistant said)")
    probes.add_argument("--structured", action="store_true",
                        help="hold each reply to a JSON schema (at most --per-session "
                             "questions) by the backend's constrained decoding")
    probes.add_argument("--no-cache", action="store_true", help="do not use the LLM cache")
    probes.add_argument("--force", action="store_true", help="replace an existing --out file")
    probes.add_argument("--quiet", action="store_true", help="no progress bar")
    probes.add_argument("--json", action="store_true", help="print the report as JSON")
    convert = sub.add_parser("convert", help="write a dataset (any loader) as a memlab file")
    convert.add_argument("source", type=_source, metavar="NAME[=PATH]",
                         help="the dataset: a loader name, with its file after '='")
    convert.add_argument("--out", required=True, help="memlab file to write (.json or .jsonl)")
    convert.add_argument("--option", action="append", type=_option, default=[],
                         metavar="KEY=VALUE", help=option_help + "; haystack={tokens: "
                         "115000, seed: 0} pads every history")
    convert.add_argument("--conversation", action="append", default=[], metavar="ID[,ID]",
                         help="keep only these conversations (repeatable)")
    convert.add_argument("--force", action="store_true", help="replace an existing --out file")
    args = parser.parse_args(argv)
    writes = {"convert": _convert, "probes": _probes}
    if args.command in writes:
        try:
            return writes[args.command](args)
        except MemlabError as exc:  # bad input (a file, a record, an option): as a usage
            print(f"error: {exc}", file=sys.stderr)  # error, exit 2 like memlab.eval's
            return 2

    if args.option and not args.datasets:
        print("error: --option applies to the datasets named as NAME=PATH", file=sys.stderr)
        return 2
    specs = args.datasets or [(n, p) for n, p in DEFAULTS if p.exists()]
    missing = [str(p) for _, p in DEFAULTS if not p.exists()]
    if not args.datasets and missing:
        from memlab.data.paths import benchmark_dir

        folder = benchmark_dir()
        print(f"note: not found, so not shown: {', '.join(missing)}"
              + ("" if folder.is_dir() else f" (the folder {folder} does not exist; set "
                 "MEMLAB_DATASETS to the one holding the benchmark files)"), file=sys.stderr)
    if not specs:
        print("no datasets found; name one as NAME=PATH", file=sys.stderr)
        return 2
    try:
        rows = dataset_stats(specs, dict(args.option), issues=args.issues)
    except MemlabError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(rows, indent=2, default=str))
    else:
        print(_render(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
