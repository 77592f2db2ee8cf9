"""Rank agreement of two sweeps (``python -m memlab.eval agree``) on real runs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import kendalltau

from memlab.errors import ConfigError
from memlab.eval.agree import agreement
from memlab.eval.cli import main
from memlab.eval.compare import run_items
from memlab.eval.sweep import sweep

METRIC = "turn.recall_any@5"


def _config(**dataset: object) -> dict[str, object]:
    return {"name": "agree", "dataset": {"name": "synthetic", **dataset}, "k": 10,
            "chunker": {"name": "turn"}, "tracking": {"mlflow": False},
            "grid": {"retrieval.name": ["bm25", "recency", "none", "oracle"]}}


@pytest.fixture(scope="module")
def sweeps(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """All 48 synthetic probes (A) and the same grid on the multi-session ones (B)."""
    mp = pytest.MonkeyPatch()
    mp.setenv("MEMLAB_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))
    try:
        a, b = tmp_path_factory.mktemp("a"), tmp_path_factory.mktemp("b")
        sweep(_config(), out=a, progress=False)
        sweep(_config(probes={"categories": ["multi-session"]}), out=b, progress=False)
        return a, b
    finally:
        mp.undo()


def _means(sweep_dir: Path) -> dict[str, float]:
    out = {}
    for run in sorted(sweep_dir.iterdir()):
        values = [r["metrics"][METRIC] for r in run_items(run)
                  if r["metrics"].get(METRIC) is not None]
        name = json.loads((run / "metrics.json").read_text())["config_name"]
        out[name[name.index("[") + 1: -1]] = float(np.mean(values))
    return out


def test_tau_is_kendalls_over_the_configurations_means(sweeps: tuple[Path, Path]) -> None:
    a, b = sweeps
    result = agreement(a, b, METRIC, n_boot=200, n_halves=50)
    means_a, means_b = _means(a), _means(b)
    labels = sorted(means_a)
    assert labels == ["retrieval=bm25", "retrieval=none", "retrieval=oracle",
                      "retrieval=recency"]
    assert result["configurations"] == 4 and result["n_b"] == 8  # 1 has no evidence
    assert result["n_a"] == 44  # 4 synthetic probes have no evidence to find
    want = kendalltau([means_a[x] for x in labels], [means_b[x] for x in labels]).statistic
    assert result["tau"] == pytest.approx(round(float(want), 4))
    rows = {r["label"]: r for r in result["rows"]}
    assert rows["retrieval=oracle"]["mean_a"] == 1.0
    assert rows["retrieval=none"]["mean_b"] == 0.0
    low, high = result["tau_ci"]
    assert -1 <= low <= high <= 1
    assert result["rows"][0]["label"] == "retrieval=oracle"  # best on A first
    assert result["subsample_size"] == 8 and -1 <= result["tau_a_subsample"] <= 1
    again = agreement(a, b, METRIC, n_boot=200, n_halves=50)
    assert again == result  # seeded resampling


def test_the_cli_prints_the_table_and_json(sweeps: tuple[Path, Path],
                                           capsys: pytest.CaptureFixture[str]) -> None:
    a, b = sweeps
    assert main(["agree", str(a), str(b), "--metric", METRIC]) == 0
    out = capsys.readouterr().out
    assert "Kendall tau A vs B:" in out and "B half vs half:" in out
    assert "A sampled to 8 probes vs all of A:" in out
    assert main(["agree", str(a), str(b), "--metric", METRIC, "--json",
                 "--category-a", "multi-session"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["n_a"] == 8 and data["tau"] == 1.0  # the same probes on both sides


def test_sweeps_that_share_too_little_are_refused(sweeps: tuple[Path, Path],
                                                 tmp_path: Path) -> None:
    a, b = sweeps
    with pytest.raises(ConfigError, match="share 1 configuration label"):
        agreement(a, next(b.iterdir()), METRIC)
    with pytest.raises(ConfigError, match="share 0 scored probe"):
        agreement(a, b, "turn.recall_any@5", category_b="no-such-category")
    with pytest.raises(ConfigError, match="no run directories"):
        agreement(a, tmp_path, METRIC)
    assert main(["agree", str(a), str(tmp_path / "typo")]) == 2
