"""What memlab's cache holds, and giving its space back (``python -m memlab.eval cache``).

Everything memlab computes once lives under :func:`memlab.cache.cache_root`: embeddings
(one SQLite file, by model id), LLM responses and reranker scores (SQLite), faiss indexes
and ONNX exports (folders, rebuilt when missing), and the assembled GGUF models. A sweep
over trained embedders leaves a few hundred MB of vectors per model; this lists them, drops
the models no longer needed and compacts the file.
"""

from __future__ import annotations

import fnmatch
import shutil
import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from memlab.cache import cache_root
from memlab.errors import MemlabError

#: Folders of the cache: (name, what its entries are, whether memlab rebuilds them).
FOLDERS = (("faiss", "faiss indexes", True), ("onnx", "ONNX exports", True),
           ("models", "GGUF models", False))


def cache_report(root: Path | None = None) -> dict[str, Any]:
    """Sizes and contents of the cache at ``root`` (default: :func:`cache_root`); nothing
    is written but the embedding file's current-layout tables if it has none yet."""
    from memlab.embed.cache import EmbeddingCache

    root = cache_root() if root is None else root
    out: dict[str, Any] = {"root": str(root), "bytes": _size(root), "parts": []}
    embeddings = root / "embeddings.sqlite"
    if embeddings.exists():
        models = EmbeddingCache(embeddings).models()
        out["parts"].append({
            "name": "embeddings.sqlite", "bytes": _size(embeddings),
            "rows": sum(m[1] for m in models),
            "first_layout_rows": sum(m[1] for m in models if m[3]),
            "models": [{"model": name, "vectors": rows, "vector_bytes": size,
                        "first_layout": old} for name, rows, size, old in models]})
    for name, sql in (("llm/responses.sqlite", "SELECT backend || ':' || model, COUNT(*) "
                       "FROM responses GROUP BY 1 ORDER BY 2 DESC"),
                      ("rerank.sqlite", "SELECT 'scores', COUNT(*) FROM scores")):
        path = root / name
        if path.exists():
            rows = _read_only(path, sql)
            out["parts"].append({"name": name, "bytes": _size(path),
                                 "rows": sum(n for _, n in rows),
                                 "models": [{"model": m, "rows": n} for m, n in rows]})
    for name, what, rebuilt in FOLDERS:
        folder = root / name
        if folder.is_dir():
            entries = sorted(p for p in folder.iterdir() if not p.name.endswith(
                (".lock", ".sha256", ".partial")))
            out["parts"].append({"name": f"{name}/", "bytes": _size(folder),
                                 "rows": len(entries), "what": what, "rebuilt": rebuilt})
    return out


def drop_embeddings(patterns: Sequence[str], *, apply: bool,
                    root: Path | None = None) -> tuple[list[tuple[str, int]], int]:
    """The embedding models whose id matches one of the glob ``patterns`` with their
    vector counts, and (``apply``) the vectors deleted; nothing is deleted otherwise."""
    from memlab.embed.cache import EmbeddingCache

    path = (cache_root() if root is None else root) / "embeddings.sqlite"
    if not path.exists():
        raise MemlabError(f"{path}: no embedding cache here")
    cache = EmbeddingCache(path)
    counts: dict[str, int] = {}
    for name, rows, _, _ in cache.models():
        if any(fnmatch.fnmatchcase(name, p) for p in patterns):
            counts[name] = counts.get(name, 0) + rows
    if not counts:
        known = "\n  ".join(m[0] for m in cache.models()) or "(none)"
        raise MemlabError(f"no cached embedding model matches {', '.join(patterns)}; the "
                          f"cache holds:\n  {known}")
    deleted = cache.drop(list(counts)) if apply else 0
    return sorted(counts.items()), deleted


def compact_embeddings(root: Path | None = None) -> tuple[int, int]:
    """:meth:`memlab.embed.cache.EmbeddingCache.compact` on the cache's embedding file."""
    from memlab.embed.cache import EmbeddingCache

    path = (cache_root() if root is None else root) / "embeddings.sqlite"
    if not path.exists():
        raise MemlabError(f"{path}: no embedding cache here")
    return EmbeddingCache(path).compact()


def drop_folder(name: str, *, apply: bool, root: Path | None = None) -> int:
    """The bytes of a rebuilt-on-demand folder (``faiss``, ``onnx``), deleted if ``apply``."""
    if name not in {n for n, _, rebuilt in FOLDERS if rebuilt}:
        raise MemlabError(f"{name}: only folders memlab rebuilds when missing can be dropped "
                          f"({', '.join(n for n, _, r in FOLDERS if r)})")
    folder = (cache_root() if root is None else root) / name
    size = _size(folder) if folder.exists() else 0
    if apply and folder.exists():
        shutil.rmtree(folder)
    return size


def format_report(report: dict[str, Any]) -> str:
    lines = [f"cache: {report['root']} ({human(report['bytes'])})"]
    for part in report["parts"]:
        count = f"{part['rows']:,} {part.get('what', 'rows')}"
        note = ", rebuilt when missing" if part.get("rebuilt") else ""
        lines.append(f"{part['name']:<22} {human(part['bytes']):>9}  {count}{note}")
        if part["name"] == "embeddings.sqlite":
            if part["first_layout_rows"]:
                lines.append(f"  {part['first_layout_rows']:,} vectors in the first layout "
                             "(~2.7x their size on disk): `cache --compact` moves them")
            lines.append(f"  {'vectors':>9} {'data':>9}  model")
            lines += [f"  {m['vectors']:>9,} {human(m['vector_bytes']):>9}  {m['model']}"
                      f"{'  (first layout)' if m['first_layout'] else ''}"
                      for m in part["models"]]
        elif part.get("models"):
            lines += [f"  {m['rows']:>9,}  {m['model']}" for m in part["models"]]
    return "\n".join(lines)


def human(size: int) -> str:
    value = float(size)
    for unit in ("B", "kB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    raise AssertionError("unreachable")


def _size(path: Path) -> int:
    if path.is_file():
        extra = [path.with_name(path.name + s) for s in ("-wal", "-shm")]
        return path.stat().st_size + sum(p.stat().st_size for p in extra if p.exists())
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def _read_only(path: Path, sql: str) -> list[tuple[str, int]]:
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30.0)
        try:
            return [(str(a), int(b)) for a, b in conn.execute(sql).fetchall()]
        finally:
            conn.close()
    except sqlite3.DatabaseError as exc:
        raise MemlabError(f"{path}: cannot read: {exc}") from exc
