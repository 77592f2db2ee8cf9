"""``crossfit``: each part of a split scored with the grid cell chosen on the other parts,
pooled; exact on hand-made runs, on a real LoCoMo sweep, and clear about bad input."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from memlab.errors import ConfigError
from memlab.eval.cli import main
from memlab.eval.crossfit import cell_of, crossfit

METRIC = "session.recall_all@5"


def _run(root: Path, label: str, fold: int | None, hits: list[int], *,
         part: str = "test") -> Path:
    """A run directory: ``hits`` are its probes' metric values (probe ids by fold)."""
    path = root / label.replace(",", "_")
    path.mkdir(parents=True)
    split = {"part": part, "seed": 0}
    if fold is not None:
        split |= {"folds": 3, "fold": fold}
    config = {"name": f"study[{label}]", "dataset": {"name": "x", "probes": {"split": split}}}
    (path / "config.resolved.yaml").write_text(yaml.safe_dump(config))
    prefix = f"f{fold}" if fold is not None else part
    rows = [{"probe_id": f"{prefix}-{i}", "category": "c", "error": None,
             "metrics": {METRIC: float(v)}} for i, v in enumerate(hits)]
    (path / "items.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (path / "metrics.json").write_text("{}")  # a finished run
    return path


def _sweep(root: Path) -> Path:
    """Cell ``a`` is best on folds 2 and 3, ``b`` on fold 1; 4 probes a fold."""
    values = {"a": {1: [1, 0, 0, 0], 2: [1, 1, 1, 1], 3: [1, 1, 1, 0]},
              "b": {1: [1, 1, 1, 0], 2: [1, 1, 0, 0], 3: [1, 1, 0, 0]},
              "c": {1: [1, 1, 0, 0], 2: [1, 1, 1, 0], 3: [1, 1, 1, 1]}}
    for cell, by_fold in values.items():
        for fold, hits in by_fold.items():
            _run(root, f"fold{fold},w={cell}", fold, hits)
    return root


def test_each_fold_takes_the_cell_its_other_folds_score_best(tmp_path: Path) -> None:
    result = crossfit([_sweep(tmp_path / "sweep")], METRIC, baseline="w=b")
    assert result["parts"] == ["fold 1 of 3", "fold 2 of 3", "fold 3 of 3"]
    # fold 1: a 7/8 = c 7/8 on folds 2+3 -> a (first in order); fold 2: c 6/8 > a 4/8;
    # fold 3: a 5/8 = c 5/8 -> a
    assert [(c["part"], c["chosen"]) for c in result["choices"]] == [
        ("fold 1 of 3", "w=a"), ("fold 2 of 3", "w=c"), ("fold 3 of 3", "w=a")]
    assert [c["held_out"]["mean"] for c in result["choices"]] == [0.25, 0.75, 0.75]
    assert result["crossfit"]["mean"] == pytest.approx(7 / 12) and result["crossfit"]["n"] == 12
    assert result["crossfit"]["ci_low"] <= 7 / 12 <= result["crossfit"]["ci_high"]
    # chosen with every fold seen, c (9/12) looks better than the honest 7/12
    assert result["best_in_sample"] == {"cell": "w=c", "mean": 0.75, "n": 12}
    assert result["table"]["w=b"]["all"] == {"mean": pytest.approx(7 / 12), "n": 12}
    base = result["baseline"]
    assert base["cell"] == "w=b" and base["n"] == 12 and base["mean_diff"] == pytest.approx(0)
    assert (base["won"], base["lost"]) == (2, 2)  # folds 2 and 3 win one each, fold 1 loses 2
    # ties go to --prefer: fold 1 (a = c) and fold 3 (a = c) then take c
    preferred = crossfit([tmp_path / "sweep"], METRIC, prefer="w=c")
    assert [c["chosen"] for c in preferred["choices"]] == ["w=c", "w=c", "w=c"]
    lower = crossfit([tmp_path / "sweep"], METRIC, lower_is_better=True)
    assert [c["chosen"] for c in lower["choices"]] == ["w=b", "w=a", "w=a"]


def test_the_part_comes_from_the_split_and_the_cell_from_the_label(tmp_path: Path) -> None:
    assert cell_of("fold1,weight=0.3,time_weight=0.002") == "weight=0.3,time_weight=0.002"
    assert cell_of("dense-test") == "dense" and cell_of("hybrid-dev") == "hybrid"
    assert cell_of("fold=2,rrf_k=60") == "rrf_k=60" and cell_of("test") == "(all)"
    assert cell_of("tuned-t,k=5", r"t") == "tuned,k=5"
    with pytest.raises(ConfigError, match=r"--part-words 'fold\(' is not a regular expression"):
        cell_of("fold1", "fold(")
    for label, part, hits in (("dense-dev", "dev", [1, 0]), ("dense-test", "test", [0, 0]),
                              ("hybrid-dev", "dev", [1, 1]), ("hybrid-test", "test", [1, 0])):
        _run(tmp_path / "halves", label, None, hits, part=part)
    result = crossfit([tmp_path / "halves"], METRIC)
    assert [(c["part"], c["chosen"]) for c in result["choices"]] == [
        ("dev", "hybrid"), ("test", "hybrid")]
    assert result["crossfit"]["mean"] == 0.75


def test_bad_input_is_a_clear_error(tmp_path: Path) -> None:
    sweep = _sweep(tmp_path / "sweep")
    with pytest.raises(ConfigError, match="--prefer 'w=z' is not a cell; the cells are "
                                          "w=a, w=b, w=c"):
        crossfit([sweep], METRIC, prefer="w=z")
    with pytest.raises(ConfigError, match=r"no probe of these runs has 'turn\.recall_any@5'"):
        crossfit([sweep], "turn.recall_any@5")
    with pytest.raises(ConfigError, match="are both cell 'w=a' on fold 1 of 3"):
        crossfit([sweep, sweep / "fold1_w=a"], METRIC)
    _run(tmp_path / "gap", "fold1,w=a", 1, [1])
    _run(tmp_path / "gap", "fold2,w=a", 2, [1])
    _run(tmp_path / "gap", "fold1,w=b", 1, [1])
    with pytest.raises(ConfigError, match="cell 'w=b' has no run on fold 2 of 3"):
        crossfit([tmp_path / "gap"], METRIC)
    with pytest.raises(ConfigError, match="every run scored the same part"):
        crossfit([tmp_path / "gap" / "fold1_w=a", tmp_path / "gap" / "fold1_w=b"], METRIC)
    _run(tmp_path / "mixed", "fold1,w=a", 1, [1])
    _run(tmp_path / "mixed", "w=a-dev", None, [1], part="dev")
    with pytest.raises(ConfigError, match="come from different splits"):
        crossfit([tmp_path / "mixed"], METRIC)
    unfinished = _run(sweep, "fold1,w=d", 1, [1])  # still going: partial items
    (unfinished / "metrics.json").unlink()
    assert sorted(crossfit([sweep], METRIC)["table"]) == ["w=a", "w=b", "w=c"]
    plain = tmp_path / "plain" / "run"
    plain.mkdir(parents=True)
    (plain / "config.resolved.yaml").write_text(yaml.safe_dump({"name": "x", "dataset": {
        "name": "x", "probes": {"split": None}}}))
    (plain / "items.jsonl").write_text("")
    (plain / "metrics.json").write_text("{}")
    with pytest.raises(ConfigError, match="scored on no part of a split"):
        crossfit([plain], METRIC)
    with pytest.raises(ConfigError, match="neither a run directory"):
        crossfit([tmp_path / "nothing-here"], METRIC)


def test_a_real_locomo_sweep_over_two_folds(tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    """bm25 over turns and over windows, each on both folds of LoCoMo's ten
    conversations: the choice and the pooled number match the runs' own items."""
    import memlab

    config: dict[str, Any] = {
        "name": "cf", "dataset": {"name": "locomo", "probes": {
            "split": {"part": "test", "folds": 2, "fold": 1, "seed": 0}}},
        "retrieval": {"name": "bm25"}, "k": 10, "tracking": {"mlflow": False},
        "grid": {"cases": [{"label": "fold1"},
                           {"label": "fold2", "dataset.probes.split.fold": 2}],
                 "chunker.name": ["turn", "window"]}}
    memlab.sweep(config, out=tmp_path / "sweep", progress=False)
    metric = "turn.budget_evidence_recall@1000"
    result = crossfit([tmp_path / "sweep"], metric, prefer="chunker=turn", baseline="chunker=turn")
    assert sorted(result["table"]) == ["chunker=turn", "chunker=window"]
    items = {}
    for run in (tmp_path / "sweep").iterdir():
        rows = [json.loads(line) for line in (run / "items.jsonl").read_text().splitlines()]
        items[run.name] = [r["metrics"][metric] for r in rows
                           if r["metrics"].get(metric) is not None]  # (no evidence: None)
    fold_mean = {name: sum(v) / len(v) for name, v in items.items()}
    for choice in result["choices"]:
        fold = choice["part"].split()[1]
        other = "2" if fold == "1" else "1"
        best = max(("turn", "window"),
                   key=lambda c: (fold_mean[f"cf_fold{other}_chunker={c}"], c == "turn"))
        assert choice["chosen"] == f"chunker={best}"
        held_out = fold_mean[f"cf_fold{fold}_chunker={best}"]
        assert choice["held_out"]["mean"] == pytest.approx(held_out)
    pooled = [v for c in result["choices"] for v in items[Path(c["run"]).name]]
    assert result["crossfit"]["mean"] == pytest.approx(sum(pooled) / len(pooled))
    assert result["crossfit"]["n"] == len(pooled) == sum(
        len(items[f"cf_fold{f}_chunker=turn"]) for f in "12")
    assert main(["crossfit", str(tmp_path / "sweep"), "--metric", metric,
                 "--baseline", "chunker=turn"]) == 0
    printed = capsys.readouterr().out
    assert f"cross-fitted {metric}: {result['crossfit']['mean']:.4f}" in printed
    assert "fold 1 of 2: chunker=" in printed and "against chunker=turn" in printed
