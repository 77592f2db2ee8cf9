"""The ``tune:`` section of a config: a search space over dotted config keys and a split.

```yaml
tune:
  metric: turn.budget_evidence_recall@1000
  direction: maximize          # or minimize
  trials: 25
  seed: 0
  dev: [conv-26, conv-30]      # conversations tuned on; test defaults to the others
  # split: {dev_fraction: 0.5, seed: 0}   # instead of dev/test lists
  space:
    chunker.params.size: [3, 4, 6]                      # categorical
    retrieval.params.base.params.k1: {low: 0.8, high: 2.0}          # float range
    retrieval.params.neighbors: {low: 0, high: 2}                   # int range
    retrieval.params.budget: {low: 500, high: 2000, log: true}      # log scale
```

A list is categorical (any YAML values: numbers, strings, whole component specs); a
mapping with ``low``/``high`` is an int range when both are integers (unless ``type:
float``), else a float range, with optional ``log`` and ``step``; ``choices:`` is a
categorical written as a mapping. Every problem is a :class:`ConfigError` naming its YAML
path (``tune.space.retrieval.params.k1``).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from memlab.errors import ConfigError
from memlab.eval.config import random_split


class SplitRule(BaseModel):
    """Conversations drawn at random (``seed``) into dev (``dev_fraction``) and test."""

    model_config = ConfigDict(extra="forbid")
    dev_fraction: float = Field(default=0.5, gt=0.0, lt=1.0)
    seed: int = 0


class TuneSpec(BaseModel):
    """What ``tune`` searches, on which conversations, for which metric."""

    model_config = ConfigDict(extra="forbid")
    space: dict[str, Any]
    metric: str = "turn.budget_evidence_recall@1000"
    direction: Literal["maximize", "minimize"] = "maximize"
    trials: int = Field(default=20, ge=1)
    seed: int = 0
    dev: list[str] | None = None
    test: list[str] | None = None
    split: SplitRule | None = None

    @model_validator(mode="after")
    def _one_split(self) -> TuneSpec:
        if self.split is not None and (self.dev is not None or self.test is not None):
            raise ValueError("give either dev/test conversation lists or a split rule")
        if self.split is None and self.dev is None:
            raise ValueError("name the dev conversations (dev: [...]) or a split rule "
                             "(split: {dev_fraction: 0.5, seed: 0})")
        return self


class Dimension:
    """One axis of the space: how Optuna samples it and how a sample maps to YAML."""

    def __init__(self, key: str, kind: str, spec: dict[str, Any]) -> None:
        self.key = key
        self.kind = kind  # categorical, int or float
        self.spec = spec

    def suggest(self, trial: Any) -> Any:
        """The trial's value for this key, as it goes into the config."""
        if self.kind == "categorical":
            labels = self.spec["labels"]
            label = trial.suggest_categorical(self.key, labels)
            return self.spec["choices"][labels.index(label)]
        low, high = self.spec["low"], self.spec["high"]
        options = {"log": self.spec.get("log", False)}
        if self.spec.get("step") is not None:
            options["step"] = self.spec["step"]
        if self.kind == "int":
            return trial.suggest_int(self.key, low, high, **options)
        return trial.suggest_float(self.key, low, high, **options)

    def config_value(self, optuna_value: Any) -> Any:
        """A stored Optuna parameter (a categorical's label) back as its config value."""
        if self.kind != "categorical":
            return optuna_value
        return self.spec["choices"][self.spec["labels"].index(optuna_value)]

    def example(self) -> Any:
        """A value of this axis, to check the key before any trial runs."""
        return self.spec["choices"][0] if self.kind == "categorical" else self.spec["low"]


def parse_tune(raw: Any, where: str) -> TuneSpec:
    """The ``tune:`` mapping validated; errors name ``tune.<field>``."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: tune must be a mapping (space, metric, dev, ...); "
                          f"got {type(raw).__name__}")
    try:
        return TuneSpec.model_validate(raw)
    except ValidationError as exc:
        problems = [f"  tune.{'.'.join(str(p) for p in err['loc'])}: {err['msg']}".rstrip(".")
                    .replace("tune.: ", "tune: ") for err in exc.errors()]
        raise ConfigError(f"{where}: invalid tune section:\n" + "\n".join(problems)) from None


def dimensions(space: dict[str, Any], where: str) -> list[Dimension]:
    """Each ``space`` entry as a :class:`Dimension` (errors name ``tune.space.<key>``)."""
    if not space:
        raise ConfigError(f"{where}: tune.space is empty: map dotted config keys to "
                          "choices ([a, b]) or ranges ({low: 1, high: 8})")
    return [_dimension(key, value, f"{where}: tune.space.{key}") for key, value in space.items()]


def _dimension(key: str, value: Any, at: str) -> Dimension:
    if key in ("tune", "grid") or key.startswith(("tune.", "grid.")) or not key:
        raise ConfigError(f"{at}: cannot tune the tune or grid sections")
    if key == "dataset" or key.startswith("dataset."):
        raise ConfigError(f"{at}: cannot tune the dataset (every trial must replay the "
                          "same conversations and probes)")
    if isinstance(value, dict) and "choices" in value:
        extra = set(value) - {"choices"}
        if extra:
            raise ConfigError(f"{at}: a categorical takes only choices (not {sorted(extra)})")
        value = value["choices"]
    if isinstance(value, list):
        return _categorical(key, value, at)
    if not isinstance(value, dict):
        raise ConfigError(f"{at}: expected a list of choices or a range {{low, high}}, "
                          f"got {value!r}")
    return _range(key, value, at)


def _categorical(key: str, choices: list[Any], at: str) -> Dimension:
    if not choices:
        raise ConfigError(f"{at}: the list of choices is empty")
    labels = [_label(c) for c in choices]
    if len(set(labels)) != len(labels):
        raise ConfigError(f"{at}: a choice is listed twice")
    return Dimension(key, "categorical", {"choices": choices, "labels": labels})


def _label(choice: Any) -> Any:
    """Optuna stores only plain values; specs and lists are stored as their JSON."""
    if choice is None or isinstance(choice, bool | int | float | str):
        return choice
    return json.dumps(choice, sort_keys=True)


def _range(key: str, spec: dict[str, Any], at: str) -> Dimension:
    unknown = set(spec) - {"low", "high", "log", "step", "type"}
    if unknown:
        raise ConfigError(f"{at}: unknown range field(s) {sorted(unknown)}; "
                          "a range takes low, high, log, step, type")
    if "low" not in spec or "high" not in spec:
        raise ConfigError(f"{at}: a range needs both low and high")
    low, high = spec["low"], spec["high"]
    for name, bound in (("low", low), ("high", high)):
        if isinstance(bound, bool) or not isinstance(bound, int | float):
            raise ConfigError(f"{at}.{name}: expected a number, got {bound!r}")
    if low >= high:
        raise ConfigError(f"{at}: low ({low}) must be below high ({high})")
    kind = spec.get("type") or ("int" if isinstance(low, int) and isinstance(high, int)
                                else "float")
    if kind not in ("int", "float"):
        raise ConfigError(f"{at}.type: expected int or float, got {kind!r}")
    if spec.get("log") and low <= 0:
        raise ConfigError(f"{at}: a log range needs low > 0 (got {low})")
    if spec.get("log") and spec.get("step") is not None:
        raise ConfigError(f"{at}: Optuna takes log or step, not both")
    return Dimension(key, kind, {"low": low, "high": high, "log": bool(spec.get("log")),
                                 "step": spec.get("step")})


def split_conversations(spec: TuneSpec, known: Sequence[str], where: str
                        ) -> tuple[list[str], list[str]]:
    """(dev, test) conversation ids, disjoint, in dataset order."""
    if spec.split is not None:
        return random_split(list(known), spec.split.dev_fraction, spec.split.seed)
    dev = list(spec.dev or [])
    for field, ids in (("dev", dev), ("test", spec.test or [])):
        unknown = [c for c in ids if c not in known]
        if unknown:
            raise ConfigError(f"{where}: tune.{field}: no conversation(s) "
                              f"{', '.join(unknown)} in the dataset")
    test = list(spec.test) if spec.test is not None else [c for c in known if c not in dev]
    shared = sorted(set(dev) & set(test))
    if shared:
        raise ConfigError(f"{where}: tune.test: {', '.join(shared)} also in tune.dev; "
                          "the test split must be disjoint from dev")
    if not dev or not test:
        raise ConfigError(f"{where}: tune: dev and test each need at least one conversation")
    return [c for c in known if c in dev], [c for c in known if c in test]
