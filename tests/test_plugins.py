"""Components of one's own (memlab.plugins) from the CLI, worker processes and the record,
and the output contracts every component is held to as a run uses it (memlab.contracts)."""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from memlab.chunkers.base import MemoryUnit
from memlab.contracts import ContractError, check_hits, check_units
from memlab.errors import ConfigError
from memlab.retrieval.base import Hit

ROOT = Path(__file__).resolve().parents[1]

PLUGIN = '''
"""The newest units first (or, leaking, whatever is newest); a chunker repeating one id."""
from memlab.chunkers import registry as chunkers
from memlab.chunkers.base import MemoryUnit
from memlab.retrieval import registry as strategies
from memlab.retrieval.base import Hit


class Newest:
    def __init__(self, k=5, threshold=None, leak=False):
        self.k, self.threshold, self.leak = k, threshold, leak
        self._units = []

    def params(self):
        return {"k": self.k, "threshold": self.threshold, "leak": self.leak}

    def index(self, units):
        self._units.extend(units)

    def search(self, query, k, as_of=None, **_):
        seen = [u for u in self._units if self.leak or as_of is None or u.at <= as_of]
        seen.sort(key=lambda u: u.at, reverse=True)
        return [Hit(u, float(len(seen) - n)) for n, u in enumerate(seen[:k])]


class SameIds:
    def params(self):
        return {}

    def split(self, session, context=None):
        return [MemoryUnit("same", t.text, "turn", (t.id,), session.id, t.at)
                for t in session.turns]


strategies.register("newest", Newest, replace=True)
chunkers.register("same_ids", SameIds, replace=True)
'''


@pytest.fixture
def plugin(tmp_path: Path) -> Path:
    folder = tmp_path / "myproject"
    folder.mkdir()
    (folder / "myplug.py").write_text(PLUGIN)
    return folder


def _config(folder: Path, **extra: Any) -> Path:
    path = folder / "newest.yaml"
    path.write_text(yaml.safe_dump({
        "name": "plug", "plugins": ["myplug.py"], "dataset": {"name": "synthetic"},
        "chunker": "turn", "retrieval": {"name": "newest", "params": {"k": 5}},
        "tracking": {"mlflow": False}, **extra}))
    return path


def _memlab(*args: str, cwd: Path, env: dict[str, str] | None = None
            ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "memlab.eval", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=600,
                          env={**os.environ, **(env or {})})


def test_a_config_s_plugin_runs_in_worker_processes_and_is_recorded(
        plugin: Path, tmp_path: Path) -> None:
    """From another folder, with two worker processes (spawned: fresh interpreters)."""
    config = _config(plugin, workers=2)
    done = _memlab("run", str(config), "--out", str(tmp_path / "run"), cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "probes 48, errors 0" in done.stdout
    environment = json.loads((tmp_path / "run" / "environment.json").read_text())
    [record] = environment["plugins"].values()
    assert record["file"] == str(plugin / "myplug.py")
    assert len(record["sha256"]) == 64
    resolved = yaml.safe_load((tmp_path / "run" / "config.resolved.yaml").read_text())
    assert resolved["plugins"] == [str(plugin / "myplug.py")]
    assert resolved["memory"]["params"]["retrieval"]["params"] == {
        "k": 5, "threshold": None, "leak": False}


def test_ls_sees_plugins_from_a_flag_or_the_environment(plugin: Path, tmp_path: Path) -> None:
    flagged = _memlab("ls", "retrieval", "--plugin", str(plugin / "myplug.py"), cwd=tmp_path)
    assert "newest" in flagged.stdout and "leak=False" in flagged.stdout, flagged.stderr
    listed = _memlab("ls", "chunker", cwd=tmp_path,
                     env={"MEMLAB_PLUGINS": str(plugin / "myplug.py")})
    assert "same_ids" in listed.stdout, listed.stderr
    missing = _memlab("ls", "--plugin", "no_such_plugin_module", cwd=tmp_path)
    assert missing.returncode == 2
    assert "--plugin: plugin 'no_such_plugin_module': no module of that name on the path" \
        in missing.stderr
    config = tmp_path / "gone.yaml"
    config.write_text("name: g\ndataset: synthetic\nplugins: [gone.py]\n")
    gone = _memlab("validate", str(config), cwd=tmp_path)
    assert gone.returncode == 2
    assert f"{config}: plugins: plugin '{tmp_path / 'gone.py'}': no such file" in gone.stderr


def test_a_leaking_strategy_and_a_chunker_repeating_ids_are_caught(
        plugin: Path, tmp_path: Path) -> None:
    leaky = _memlab("run", str(_config(plugin, fail_on_error=1.0)), "--set",
                    "retrieval.params.leak=true", "--out", str(tmp_path / "leak"), cwd=tmp_path)
    assert leaky.returncode == 0, leaky.stderr[-2000:]
    rows = [json.loads(line) for line in (tmp_path / "leak" / "items.jsonl").open()]
    leaked = [r for r in rows if r.get("error")]
    # the synthetic set asks 4 questions before its last session: those 4 see the future
    assert len(leaked) == 4
    assert all("future leakage" in r["error"] and r["error"].startswith(
        "ContractError: retrieval 'newest' returned") for r in leaked)
    repeated = _memlab("run", str(_config(plugin)), "--set", "chunker=same_ids", "--out",
                       str(tmp_path / "same"), cwd=tmp_path)
    assert repeated.returncode == 2
    assert "error: chunker 'same_ids', session 's1', unit 1: id 'same' is already in the " \
        "memory" in repeated.stderr


def test_a_component_registered_only_in_this_process_is_named_in_worker_errors(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from memlab.eval.run import evaluate
    from memlab.retrieval import registry

    class Mine:
        def __init__(self, k: int | None = 5, threshold: float | None = None) -> None:
            self.k, self.threshold = k, threshold

        def params(self) -> dict[str, Any]:
            return {"k": self.k, "threshold": self.threshold}

        def index(self, units: Any) -> None:
            pass

        def search(self, *args: Any, **kwargs: Any) -> list[Hit]:
            return []

    monkeypatch.setitem(registry._entries, "only_here", Mine)  # undone after the test
    with pytest.raises(ConfigError, match=r"in a worker process \(workers: 2\), which "
                       r"starts fresh.*list its module under plugins:"):
        evaluate({"name": "here", "dataset": {"name": "synthetic"},
                  "retrieval": "only_here", "workers": 2, "tracking": {"mlflow": False}},
                 out=tmp_path / "run", progress=False)


def test_a_plugin_that_fails_to_import_is_named(tmp_path: Path) -> None:
    from memlab.eval.config import load_config

    (tmp_path / "broken.py").write_text("raise RuntimeError('half written')\n")
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"name": "b", "plugins": ["broken.py"],
                                    "dataset": {"name": "synthetic"}}))
    with pytest.raises(ConfigError, match=r"c.yaml: plugins: plugin '.*broken.py' failed to "
                       r"import: RuntimeError: half written"):
        load_config(path)


# ------------------------------------------------------------------ the contracts

T0 = datetime(2024, 1, 1, tzinfo=UTC)


def _unit(uid: str, at: datetime = T0, turns: tuple[str, ...] = ("t1",)) -> MemoryUnit:
    return MemoryUnit(uid, "text", "turn", turns, "s1", at)


@pytest.mark.parametrize("hits, message", [
    ("oops", "returned str; a search returns a list of Hit"),
    ([(_unit("a"), 1.0)], "hit 0 is a tuple; a search returns Hit\\(unit, score\\)"),
    ([_unit("a")], "hit 0 is a MemoryUnit"),
    ([Hit(_unit("a"), math.nan)], "hit 0 \\('a'\\) has score nan"),
    ([Hit(_unit("a"), "1")], "has score '1'"),
    ([Hit(_unit("a"), 1.0), Hit(_unit("a"), 0.5)], "unit 'a' returned twice \\(hit 1\\)"),
    ([Hit(_unit(str(n)), 1.0) for n in range(4)], "returned 4 hits for k=3"),
    ([Hit(_unit("late", T0 + timedelta(days=2)), 1.0)],
     "returned 1 unit\\(s\\) dated after the question .*'late'.*future leakage"),
])
def test_search_contract(hits: Any, message: str) -> None:
    as_of = T0 + timedelta(days=1)
    with pytest.raises(ContractError, match=message):
        check_hits(hits, "retrieval 'x'", 3, as_of)


@pytest.mark.parametrize("units, message", [
    ({"id": "a"}, "returned dict for session 's1'"),
    ([{"id": "a"}], "unit 0: a dict, not a MemoryUnit"),
    ([_unit(" ")], "empty id"),
    ([_unit("a"), _unit("a")], "unit 1: id 'a' is already in the memory"),
    ([_unit("old")], "unit 0: id 'old' is already in the memory"),
    ([_unit("a", turns=("t9",))], "source turn\\(s\\) 't9' are not turns the memory has read"),
    ([_unit("a", at=T0 - timedelta(hours=1))], "dated .* before its source turn said at"),
])
def test_chunker_contract(units: Any, message: str) -> None:
    with pytest.raises(ContractError, match=message):
        check_units(units, "chunker 'x'", "s1", {"t1": T0}, {"old"})
    check_units([_unit("new")], "chunker 'x'", "s1", {"t1": T0}, {"old"})


def test_template_dirs_are_relative_to_the_config_file(tmp_path: Path) -> None:
    from memlab.eval.config import load_config

    folder = tmp_path / "project"
    (folder / "prompts").mkdir(parents=True)
    path = folder / "c.yaml"
    path.write_text(yaml.safe_dump({"name": "t", "dataset": {"name": "synthetic"},
                                    "template_dirs": ["prompts"]}))
    assert load_config(path).template_dirs == [str(folder / "prompts")]


def test_a_scorer_returning_text_is_the_probe_s_error_not_a_crashed_summary(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from memlab.contracts import check_score
    from memlab.eval.run import evaluate
    from memlab.metrics import registry

    assert check_score("s", True) == 1.0 and check_score("s", None) is None
    with pytest.raises(ContractError, match=r"scorer 's' returned nan"):
        check_score("s", math.nan)

    class Says:
        def params(self) -> dict[str, Any]:
            return {}

        def score(self, answer: str, gold: str, probe: Any) -> Any:
            return "yes"

    monkeypatch.setitem(registry._entries, "says", Says)
    result = evaluate({"name": "says", "dataset": {"name": "synthetic"}, "retrieval": "bm25",
                       "scorers": ["exact_match", "says"], "fail_on_error": 1.0,
                       "answer": {"llm": {"name": "mock", "params": {"default": "x"}}},
                       "cache": {"llm": "off"}, "tracking": {"mlflow": False}},
                      out=tmp_path / "run", progress=False)
    assert result.summary["errors"]["probes"] == 48
    assert all("scorer 'says' returned 'yes'" in row["error"] for row in result.items())


def test_conform_passes_a_good_component_and_names_what_a_bad_one_breaks(
        plugin: Path, tmp_path: Path) -> None:
    flag = ["--plugin", str(plugin / "myplug.py")]
    good = _memlab("conform", "retrieval", "newest", "--params", "{k: 3}", *flag, cwd=tmp_path)
    assert good.returncode == 0, good.stderr[-2000:]
    assert good.stdout.strip() == ("retrieval 'newest' conforms: spec, params, protocol, "
                                   "no future leakage, hits, deterministic")
    leaky = _memlab("conform", "retrieval", "newest", "--params", "{leak: true}", *flag,
                    cwd=tmp_path)
    assert leaky.returncode == 2 and "retrieval 'newest': contract: search returned" in \
        leaky.stderr and "future leakage" in leaky.stderr
    same = _memlab("conform", "chunker", "same_ids", *flag, cwd=tmp_path)
    assert same.returncode == 2
    assert "chunker 'same_ids': contract: chunker, session 's1', unit 1: id 'same'" in \
        same.stderr


class _Random:
    """Scores by a fresh random draw (not deterministic); params() forgets ``k``."""

    def __init__(self, k: int = 5) -> None:
        self.k, self._units = k, []  # type: list[MemoryUnit]

    def params(self) -> dict[str, Any]:
        return {}

    def index(self, units: list[MemoryUnit]) -> None:
        self._units.extend(units)

    def search(self, query: str, k: int, as_of: datetime | None = None,
               **_: Any) -> list[Hit]:
        import random

        seen = [u for u in self._units if as_of is None or u.at <= as_of]
        return sorted((Hit(u, random.random()) for u in seen), key=lambda h: -h.score)[:k]


def test_check_component_finds_params_that_lose_the_spec_and_random_hits(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from memlab.retrieval import registry as strategies
    from memlab.testing.conformance import ConformanceError, check_component

    # registered for this test only: the registry is shared by the tests of this process
    monkeypatch.setitem(strategies._entries, "conform_random", _Random)
    with pytest.raises(ConformanceError, match=r"retrieval 'conform_random': params: "
                       r"params\(\) does not give the spec back: k: 3 -> 5"):
        check_component("retrieval", {"name": "conform_random", "params": {"k": 3}})
    with pytest.raises(ConformanceError, match="deterministic: the same search gave other "
                       "hits the second time"):
        check_component("retrieval", _Random())
    with pytest.raises(ConfigError, match="conformance checks exist for chunker"):
        check_component("template", "answer_short")
    assert check_component("retrieval", "bm25") == [
        "spec", "params", "protocol", "no future leakage", "hits", "deterministic"]


class _OldSearch(_Random):
    """A strategy written against an older protocol: search(query) alone."""

    def search(self, query: str) -> list[Hit]:  # type: ignore[override]
        return []


class _Broken(_Random):
    def index(self, units: Any) -> None:
        raise RuntimeError("the index file is locked")


def test_a_method_memlab_cannot_call_and_a_component_that_raises_are_named() -> None:
    from memlab.testing.conformance import ConformanceError, check_component

    with pytest.raises(ConformanceError, match=re.escape(
            "protocol: search(query) cannot be called as the protocol's search(query, k, "
            "as_of=None, *, probe=None) (too many positional arguments)")):
        check_component("retrieval", _OldSearch())
    with pytest.raises(ConformanceError, match=r"raised RuntimeError: the index file is "
                       r"locked \(.*test_plugins\.py:\d+ in index\)"):
        check_component("retrieval", _Broken())


def test_validate_refuses_a_strategy_memlab_could_not_call(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from memlab.eval.config import load_config
    from memlab.retrieval import registry as strategies

    monkeypatch.setitem(strategies._entries, "old_search", _OldSearch)
    with pytest.raises(ConfigError, match=re.escape(
            "retrieval.name: retrieval 'old_search': search(query) cannot be called as the "
            "protocol's search(query, k, as_of=None, *, probe=None)")):
        load_config({"name": "t", "dataset": {"name": "synthetic"}, "retrieval": "old_search"})
