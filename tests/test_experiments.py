"""Every experiment config in experiments/ loads, each grid case too: a typo in one (a
component parameter's name, a dotted key) is a ConfigError here, not an hour into a
sweep."""

from __future__ import annotations

from pathlib import Path

import pytest

from memlab.eval.config import expand_grid, load_config, read_raw
from memlab.eval.tune_space import dimensions, parse_tune

EXPERIMENTS = sorted((Path(__file__).parent.parent / "experiments").glob("*.yaml"))


@pytest.mark.parametrize("path", EXPERIMENTS, ids=lambda p: p.stem)
def test_experiment_config_and_its_cases_load(path: Path) -> None:
    raw, where = read_raw(path)
    if "tune" in raw:  # a tune config: its space parses, the rest is a plain config
        dimensions(parse_tune(raw.pop("tune"), where).space, where)
        assert load_config(raw).name
    else:
        assert expand_grid(path)


def test_every_readme_experiment_exists() -> None:
    import re

    root = Path(__file__).parent.parent
    readme = "\n".join(p.read_text() for p in [root / "README.md", *root.glob("docs/*.md")])
    named = set(re.findall(r"experiments/([\w.-]+\.yaml)", readme))
    assert named and named <= {p.name for p in EXPERIMENTS}, named - {
        p.name for p in EXPERIMENTS}
