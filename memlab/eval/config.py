"""Experiment configs: YAML -> validated, resolved :class:`ExperimentConfig`.

A config names every component as ``{name, params}``. ``validate`` checks the YAML
shape (pydantic) and then every component name and parameter against its registry, and
reports each problem with its YAML path (``retrieval.params.k``). ``--set a.b=value``
overrides are applied to the raw YAML before validation; ``grid:`` expands a config into
one config per combination for sweeps.
"""

from __future__ import annotations

import copy
import itertools
import os
import random
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from memlab.errors import ConfigError, did_you_mean
from memlab.files import parse_yaml, read_yaml

if TYPE_CHECKING:
    from memlab.data.schema import Dataset


class Spec(BaseModel):
    """A component by name with keyword parameters."""

    model_config = ConfigDict(extra="forbid")
    name: str
    params: dict[str, Any] = Field(default_factory=dict)
    identity: dict[str, Any] | None = Field(default=None, description="recorded by resolve "
                                            "(template version/hash, embedder model id)")

    @model_validator(mode="before")
    @classmethod
    def _name_alone(cls, data: Any) -> Any:
        """``retrieval: bm25`` is ``retrieval: {name: bm25}``, as in nested places."""
        return {"name": data} if isinstance(data, str) else data


class ProbeSplit(BaseModel):
    """One part of a seeded random split of the dataset's conversations, drawn by the rule
    ``tune.split`` uses (:func:`random_split`), or of a named one (``dev``: those
    conversations, test: the rest, as ``tune``'s ``dev:`` list), or of ``folds`` seeded
    folds (k-fold cross-fitting: test is fold ``fold``, dev every other fold): a model
    trained on one part (``train-reranker``, ``train-embedder``) is scored on the other."""

    model_config = ConfigDict(extra="forbid")
    part: Literal["dev", "test"]
    dev_fraction: float = Field(default=0.5, gt=0.0, lt=1.0)
    seed: int = 0
    dev: list[str] | None = Field(default=None, min_length=1, description="the dev part's "
                                  "conversation ids (instead of a seeded draw)")
    folds: int | None = Field(default=None, ge=2, description="k-fold cross-fitting: the "
                              "conversations drawn by `seed` into this many folds")
    fold: int | None = Field(default=None, ge=1, description="with `folds`: the fold (1 to "
                             "folds) that is the test part; dev is every other fold")

    @model_validator(mode="after")
    def _folds_consistent(self) -> ProbeSplit:
        if (self.folds is None) != (self.fold is None):
            raise ValueError("folds and fold go together (e.g. folds: 3, fold: 1)")
        if self.folds is not None and self.fold is not None:
            if self.fold > self.folds:
                raise ValueError(f"fold {self.fold} of {self.folds}: fold is 1 to folds")
            # (a resolved config's dump carries dev_fraction's default: that is no clash)
            mixed = [name for name, given in (("dev", self.dev is not None),
                                              ("dev_fraction", self.dev_fraction != 0.5))
                     if given]
            if mixed:
                raise ValueError(f"{' and '.join(mixed)} cannot be used with folds (a fold "
                                 "is the test part, the other folds the dev part)")
        return self

    def other(self) -> ProbeSplit:
        """The complementary part of the same split."""
        return self.model_copy(update={"part": "test" if self.part == "dev" else "dev"})

    def describe(self) -> str:
        """The part in words, e.g. "the dev part (seed 0, dev_fraction 0.5)"."""
        if self.folds is not None:
            which = (f"fold {self.fold}" if self.part == "test"
                     else f"the folds other than {self.fold}")
            return f"{which} of {self.folds} (seed {self.seed})"
        if self.dev is not None:
            return f"the {self.part} part (dev: {len(self.dev)} named conversations)"
        return f"the {self.part} part (seed {self.seed}, dev_fraction {self.dev_fraction})"

    def select(self, known: list[str]) -> list[str]:
        """The ids of ``known`` (in their order) that fall in this part."""
        if self.dev is not None:
            named = set(self.dev)
            unknown = sorted(named - set(known))
            if unknown:
                raise ConfigError(f"dataset.probes.split.dev: {', '.join(unknown)} "
                                  "not in the dataset")
            dev = [c for c in known if c in named]
            test = [c for c in known if c not in named]
        elif self.folds is not None and self.fold is not None:
            if len(known) < self.folds:
                raise ConfigError(f"dataset.probes.split: {self.folds} folds of "
                                  f"{len(known)} conversations")
            test = fold_split(known, self.folds, self.seed)[self.fold - 1]
            dev = [c for c in known if c not in set(test)]
        else:
            dev, test = random_split(known, self.dev_fraction, self.seed)
        return dev if self.part == "dev" else test


def random_split(known: list[str], dev_fraction: float, seed: int) -> tuple[list[str], list[str]]:
    """(dev, test): ``known`` shuffled by ``seed``, the first ``dev_fraction`` of it (at
    least one, at most all but one) dev; both in the order of ``known``."""
    order = list(known)
    random.Random(seed).shuffle(order)
    n_dev = min(max(1, round(len(order) * dev_fraction)), len(order) - 1)
    dev_set = set(order[:n_dev])
    return [c for c in known if c in dev_set], [c for c in known if c not in dev_set]


def fold_split(known: list[str], folds: int, seed: int) -> list[list[str]]:
    """``known`` shuffled by ``seed`` and cut into ``folds`` consecutive folds whose sizes
    differ by at most one (the first ones larger); each in the order of ``known``. The
    shuffle is :func:`random_split`'s, so with the same seed the folds nest in its parts
    (of 3 folds and halves: fold 1 lies in dev, fold 3 in test, fold 2 straddles them)."""
    order = list(known)
    random.Random(seed).shuffle(order)
    size, extra = divmod(len(order), folds)
    parts, start = [], 0
    for i in range(folds):
        end = start + size + (1 if i < extra else 0)
        chosen = set(order[start:end])
        parts.append([c for c in known if c in chosen])
        start = end
    return parts


class ProbeSelection(BaseModel):
    """Which probes to answer: all, some categories or conversations, one part of a
    seeded split, a stratified sample, a limit."""

    model_config = ConfigDict(extra="forbid")
    categories: list[str] | None = None
    conversations: list[str] | None = None
    split: ProbeSplit | None = None
    sample: int | None = Field(default=None, ge=1, description="stratified sample size")
    stratify: Literal["category", "category_id", "abstention"] = Field(
        default="category", description="the probe attribute a sample is spread over")
    limit: int | None = Field(default=None, ge=1, description="at most this many, in order")
    seed: int = 0


class DatasetSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    path: str | None = None
    params: dict[str, Any] = Field(default_factory=dict)
    probes: ProbeSelection = Field(default_factory=ProbeSelection)

    @model_validator(mode="before")
    @classmethod
    def _name_alone(cls, data: Any) -> Any:
        """``dataset: synthetic`` is ``dataset: {name: synthetic}``, as for components."""
        return {"name": data} if isinstance(data, str) else data

    def load(self) -> Dataset:
        """The dataset this spec names, with its loader options (every probe: ``probes``
        selects among them later). The file may be given as ``path`` or as
        ``params.path``, not as two different ones."""
        from memlab.data import load_dataset

        params, path = dict(self.params), self.path
        if "path" in params:
            given = params.pop("path")
            if path is not None and str(given) != str(path):
                raise ConfigError(f"dataset {self.name!r}: two files given, dataset.path "
                                  f"{path!r} and dataset.params.path {given!r}; keep one")
            path = given
        return load_dataset(self.name, path=path, **params)


def _embedded_by_name(value: Any) -> Any:
    """``llm: qwen2.5-coder-1.5b`` (a catalog model) or ``llm: model.gguf`` are the
    embedded backend with that model, as on the command line (``--judge``)."""
    if isinstance(value, str):
        from memlab.llm.models import CATALOG, parse_llm

        if value in CATALOG or value.endswith(".gguf"):
            return parse_llm(value)
    return value


#: An LLM spec, which may also name an embedded model alone.
LLMSpec = Annotated[Spec, BeforeValidator(_embedded_by_name)]


class AnswerSpec(BaseModel):
    """How probes are answered; absent means retrieval-only."""

    model_config = ConfigDict(extra="forbid")
    llm: LLMSpec = Field(default_factory=lambda: Spec(name="llamacpp"))
    template: Spec = Field(default_factory=lambda: Spec(name="answer_short"))
    max_memory_tokens: int = Field(default=2000, ge=0)
    max_answer_tokens: int = Field(default=64, ge=1)
    trim_policy: str = "drop_lowest_rank"


class JudgeSpec(BaseModel):
    """An LLM judge of answers (its backend, model, template and temperature are logged)."""

    model_config = ConfigDict(extra="forbid")
    llm: LLMSpec = Field(default_factory=lambda: Spec(name="llamacpp"))
    template: str = "judge_longmemeval"
    max_tokens: int = Field(default=16, ge=1)


class Price(BaseModel):
    """What an LLM's tokens cost: US dollars per million prompt and completion tokens."""

    model_config = ConfigDict(extra="forbid")
    prompt: float = Field(ge=0)
    completion: float = Field(ge=0)


class PricesSpec(BaseModel):
    """The price of each LLM role's tokens (a hosted OpenAI-compatible model's, say); a
    run then records ``cost_usd``. Roles left out are not priced (a local model's)."""

    model_config = ConfigDict(extra="forbid")
    answer: Price | None = None
    judge: Price | None = None
    ingest: Price | None = Field(default=None, description="the memory's calls while "
                                 "ingesting (fact extraction, summaries, keys)")
    search: Price | None = Field(default=None, description="the calls a search makes "
                                 "(query rewriting, reranking)")


class CacheSpec(BaseModel):
    """LLM response cache mode; caches live under ``$MEMLAB_CACHE_DIR`` (~/.cache/memlab)."""

    model_config = ConfigDict(extra="forbid")
    llm: Literal["off", "read", "readwrite"] = "readwrite"

    @field_validator("llm", mode="before")
    @classmethod
    def _yaml_off(cls, value: Any) -> Any:
        """YAML reads a bare ``off`` as false (``cache.llm=off`` on the command line)."""
        return "off" if value is False else value


class TrackingSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    mlflow: bool = True
    experiment: str | None = Field(default=None, description="default: memlab-<dataset>")
    tracking_uri: str | None = Field(default=None, description="default: $MLFLOW_TRACKING_URI "
                                     "or a local store in the project")
    traces: str = Field(default="auto", description="MLflow traces per probe: auto "
                        "(answered runs only), on, off or 'sample N'")

    @field_validator("traces", mode="before")
    @classmethod
    def _yaml_switch(cls, value: Any) -> Any:
        """YAML reads a bare ``on`` / ``off`` as a boolean."""
        return ("on" if value else "off") if isinstance(value, bool) else value

    @field_validator("traces")
    @classmethod
    def _policy(cls, value: str) -> str:
        from memlab.eval.mlflow_traces import policy_error

        error = policy_error(value)
        if error is not None:
            raise ValueError(error)
        return value


class ExperimentConfig(BaseModel):
    """One evaluation: a dataset replayed through one memory configuration."""

    model_config = ConfigDict(extra="forbid")
    name: str
    description: str = ""
    dataset: DatasetSpec
    memory: Spec = Field(default_factory=lambda: Spec(name="flat"))
    chunker: Spec | None = Field(default=None, description="shorthand for "
                                 "memory.params.chunker (moved there when loaded)")
    retrieval: Spec | None = Field(default=None, description="shorthand for "
                                   "memory.params.retrieval (moved there when loaded)")
    k: int | None = Field(default=10, ge=1, description="units given to the answer prompt "
                          "(null: every retrieved unit, bounded by answer.max_memory_tokens)")
    depth: int = Field(default=100, ge=1, description="units retrieved for retrieval metrics "
                       "(recall@50 and the 2,000-token budget need a deep list)")
    answer: AnswerSpec | None = None
    scorers: list[str] = Field(
        default_factory=lambda: ["locomo_f1", "exact_match", "token_f1_set", "bleu1"]
    )
    judge: JudgeSpec | None = None
    template_dirs: list[str] = Field(default_factory=list,
                                     description="folders of user templates (override "
                                     "built-ins; relative to the config file)")
    plugins: list[str] = Field(default_factory=list, description="modules (or .py files, "
                               "relative to the config) that register components of one's "
                               "own; imported before the components are checked, and in "
                               "every worker (memlab.plugins)")
    cache: CacheSpec = Field(default_factory=CacheSpec)
    prices: PricesSpec = Field(default_factory=PricesSpec)
    tracking: TrackingSpec = Field(default_factory=TrackingSpec)
    workers: int = Field(default=1, ge=1)
    fail_on_error: float = Field(default=0.2, ge=0.0, le=1.0,
                                 description="stop when this share of probes errored")
    seed: int = 0
    grid: dict[str, list[Any]] = Field(default_factory=dict)

    @property
    def retrieval_only(self) -> bool:
        return self.answer is None


#: Component fields of a config and the registry kind each is checked against.
COMPONENT_FIELDS: dict[str, str] = {
    "memory": "memory",
    "answer.llm": "llm",
    "answer.template": "template",
    "judge.llm": "llm",
}
#: Top-level shorthands for a parameter of the memory architecture.
SHORTHANDS = ("chunker", "retrieval")


def load_config(
    source: str | Path | dict[str, Any], overrides: list[str] | None = None
) -> ExperimentConfig:
    """Read YAML (or a dict), apply ``key=value`` overrides, validate shape and components."""
    raw, where = read_raw(source)
    for item in override_list(overrides):
        apply_override(raw, item)
    return _validated(raw, where)


def override_list(overrides: str | Sequence[str] | None) -> list[str]:
    """``key=value`` overrides as a list: one given as a plain string is one override (a
    notebook's ``overrides="k=5"``), not a sequence of characters."""
    if isinstance(overrides, str):
        return [overrides]
    return list(overrides or [])


def read_raw(source: str | Path | dict[str, Any]) -> tuple[dict[str, Any], str]:
    """The config as a plain dict (a copy; ``name`` defaults to the file's stem) and where
    it came from, before overrides and validation."""
    if isinstance(source, dict):
        return copy.deepcopy(source), "<config>"
    if not isinstance(source, str | os.PathLike):
        raise ConfigError("a config is a YAML file's path, a dict or an ExperimentConfig; "
                          f"got {type(source).__name__} {source!r:.60}")
    path = Path(source)
    raw = read_yaml(path)
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    if isinstance(raw.get("plugins"), list):  # .py files next to the config, found from anywhere
        from memlab.plugins import resolve_paths

        raw["plugins"] = resolve_paths([str(p) for p in raw["plugins"]], path.parent)
    if isinstance(raw.get("template_dirs"), list):  # as plugins: relative to the config file
        raw["template_dirs"] = [str(d) if Path(str(d)).expanduser().is_absolute()
                                else str((path.parent / str(d)).resolve())
                                for d in raw["template_dirs"]]
    raw.setdefault("name", path.stem)
    return raw, str(path)


def _validate_shape(raw: dict[str, Any], where: str) -> ExperimentConfig:
    try:
        return ExperimentConfig.model_validate(raw)
    except ValidationError as exc:
        problems = [
            f"  {'.'.join(str(p) for p in err['loc']) or '(top level)'}: "
            f"{err['msg'].removeprefix('Value error, ')}{_did_you_mean(err)}"
            for err in exc.errors()
        ]
        problems += _despite_shape(raw, exc)
        raise ConfigError(f"{where}: invalid config:\n" + "\n".join(problems)) from None


#: What stands in for a required top-level value that failed while the rest is checked
#: (the stand-in itself is not reported on).
_STAND_INS: dict[str, Any] = {"name": "config", "dataset": {"name": "synthetic"}}


def _despite_shape(raw: dict[str, Any], exc: ValidationError) -> list[str]:
    """The component problems of the rest of a config whose shape failed: each failing
    value taken out (its default used), the components checked, so that every problem is
    listed at once (nothing if the rest fails too, or names plugins to import)."""
    if any(err["loc"] and err["loc"][0] in ("plugins", "template_dirs")
           for err in exc.errors()):
        return []  # the components they register, or the templates they hold, are unknown
    rest = copy.deepcopy(raw)
    stood: set[Any] = set()
    errors = exc.errors()
    for err in errors:  # a required value that is missing or not a mapping at all, or a
        loc = err["loc"]  # required key inside it missing: a valid stand-in for all of it
        if loc and loc[0] in _STAND_INS and (len(loc) == 1 or err["type"] == "missing"):
            rest[loc[0]] = copy.deepcopy(_STAND_INS[loc[0]])
            stood.add(loc[0])
    for err in errors:  # any other failing value: taken out, its default used
        if err["loc"] and err["loc"][0] in stood:
            continue
        node: Any = rest
        *path, last = err["loc"] or ("",)
        for step in path:
            node = node.get(step) if isinstance(node, dict) else (
                node[step] if isinstance(node, list) and isinstance(step, int)
                and step < len(node) else None)
        if not isinstance(node, dict):
            return []  # inside a list: leave it to the shape error alone
        node.pop(last, None)
    try:
        shaped = ExperimentConfig.model_validate(rest)
    except ValidationError:
        return []
    if shaped.plugins:
        return []
    config, found = fold_shorthands(shaped)
    return found + component_problems(config)


def _did_you_mean(err: Any) -> str:
    """For an unknown key (``dataset.probes.sampel``): the known keys of that section."""
    import typing

    if err.get("type") != "extra_forbidden":
        return ""
    model: Any = ExperimentConfig
    for step in err["loc"][:-1]:
        field = model.model_fields.get(step) if isinstance(step, str) else None
        inner = [a for a in typing.get_args(field.annotation) or (field.annotation,)
                 if isinstance(a, type) and issubclass(a, BaseModel)] if field else []
        if not inner:
            return ""
        model = inner[0]
    known = sorted(model.model_fields)
    close = did_you_mean(str(err["loc"][-1]), known)
    return (f"; {close}" if close else "") + f" (known: {', '.join(known)})"


def _validated(raw: dict[str, Any], where: str) -> ExperimentConfig:
    """``raw`` checked in shape, shorthands folded, and every component checked: all the
    problems of the shorthands and of the other components in one error."""
    shaped = _validate_shape(raw, where)
    if shaped.plugins:  # their components must be registered before anything names them
        from memlab.plugins import import_plugins

        import_plugins(shaped.plugins, f"{where}: plugins")
    config, found = fold_shorthands(shaped)
    found += component_problems(config)
    if found:
        raise ConfigError(f"{where}: invalid components:\n" + "\n".join(found))
    return config


def fold_shorthands(config: ExperimentConfig) -> tuple[ExperimentConfig, list[str]]:
    """(the config with top-level ``chunker``/``retrieval`` moved into the memory's params,
    the shorthands' problems). They are shorthands for ``memory.params.chunker`` /
    ``.retrieval``, for any memory that takes such a parameter (``flat``: both;
    ``tiered``/``extracted``: ``retrieval``); with an unknown memory nothing is moved (the
    memory's own check names it)."""
    from memlab.components import registry
    from memlab.spec import problems

    given = {key: getattr(config, key) for key in SHORTHANDS if getattr(config, key) is not None}
    if not given:
        return config, []
    try:
        accepted = {p.name for p in registry("memory").params(config.memory.name)}
    except ConfigError:
        return config, []
    params = dict(config.memory.params)
    found = []
    for key, spec in given.items():
        mine = []
        if key not in accepted:
            mine.append(f"  {key}: memory '{config.memory.name}' takes no {key} (it would be "
                        f"ignored); remove it, or set it only where memory is flat")
        elif key in params:
            mine.append(f"  {key}: set both here and in memory.params.{key}; keep one")
        mine += [f"  {p}" for p in problems(key, spec, key,
                                            template_dirs=tuple(config.template_dirs))]
        if not mine:  # a shorthand with problems stays out (its lines name it once)
            params[key] = spec.model_dump(exclude_none=True)
        found += mine
    memory = config.memory.model_copy(update={"params": params})
    return config.model_copy(update={"memory": memory, **dict.fromkeys(given)}), found


def component_problems(config: ExperimentConfig) -> list[str]:
    """Every problem of the config's components (nested ones too), one indented line each
    naming its YAML path."""
    from memlab.components import registry
    from memlab.spec import problems as spec_problems

    problems = [f"  template_dirs[{i}]: no folder at {folder} (relative to the config file)"
                for i, folder in enumerate(config.template_dirs) if not Path(folder).is_dir()]
    folders = [folder for folder in config.template_dirs if Path(folder).is_dir()]
    for dotted, kind in COMPONENT_FIELDS.items():
        spec = _get_dotted(config, dotted)
        if spec is not None:
            problems += [f"  {p}" for p in spec_problems(
                kind, spec, dotted, template_dirs=tuple(folders))]
    if config.judge is not None:
        try:
            _check_template(config.judge.template, folders)
        except ConfigError as exc:
            problems.append(f"  judge.template: {exc}")
    for name in config.scorers:
        try:
            registry("scorer").get(name)
        except ConfigError as exc:
            problems.append(f"  scorers: {exc}")
    from memlab.data import registry as loaders

    try:
        loaders.get(config.dataset.name)
    except ConfigError as exc:
        problems.append(f"  dataset.name: {exc}")
    return problems


def _check_template(name: str, template_dirs: list[str]) -> None:
    from memlab.prompts import get_template

    get_template(name, template_dirs)


def _get_dotted(obj: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            return None
    return obj


def apply_override(raw: dict[str, Any], item: str) -> None:
    """Apply ``a.b.c=value`` to the raw config; the value is parsed as YAML.

    Under ``grid.`` the rest is one grid key, dots and all: ``grid.retrieval.params.k=[3, 5]``
    sets the axis ``retrieval.params.k`` (grid keys are dotted config paths).
    """
    key, sep, text = item.partition("=")
    if not sep or not key:
        raise ConfigError(f"--set expects key=value, got {item!r}")
    value = parse_yaml(text, f"--set {item}") if text else None
    if key.startswith("grid.") and len(key) > len("grid."):
        grid = raw.setdefault("grid", {})
        if not isinstance(grid, dict):
            raise ConfigError(f"cannot set {key}: grid is not a mapping")
        grid[key.removeprefix("grid.")] = value
        return
    set_dotted(raw, key, value)


def set_dotted(raw: dict[str, Any], key: str, value: Any) -> None:
    parts = key.split(".")
    node = raw
    for part in parts[:-1]:
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            raise ConfigError(f"cannot set {key}: {part} is not a mapping")
        node = child
    node[parts[-1]] = value


def expand_grid(source: str | Path | dict[str, Any],
                overrides: list[str] | None = None) -> list[ExperimentConfig]:
    """One validated config per combination of the ``grid:`` values (a sweep).

    Each grid key is a dotted config path with a list of values; the variants are their
    cartesian product. The special key ``cases`` holds a list of mappings, each a bundle
    of dotted keys set together (``{label: fc, retrieval.name: full_context, k: null}``),
    for variants that differ in several settings at once.
    """
    raw, where = read_raw(source)
    for item in override_list(overrides):
        apply_override(raw, item)
    grid = raw.pop("grid", None) or {}
    if not isinstance(grid, dict):
        raise ConfigError(f"{where}: grid must map dotted keys to lists of values")
    shorts = _short_keys([key for key in grid if key != "cases"])
    axes = [_axis(key, values, where, shorts[key] if key in shorts else str(key))
            for key, values in grid.items()]
    configs = []
    for combo in itertools.product(*axes):
        variant = copy.deepcopy(raw)
        labels = []
        for label, settings in combo:
            for key, value in settings.items():
                set_dotted(variant, key, value)
            labels.append(label)
        if labels:
            variant["name"] = f"{raw.get('name', 'sweep')}[{','.join(labels)}]"
        configs.append(_validated(variant, where))
    return configs


def _short_keys(keys: list[str]) -> dict[str, str]:
    """Each grid key's name in variant labels: ``chunker.name`` is ``chunker``, a deeper key
    its last part (``retrieval.params.base.params.depth`` is ``depth``) unless another
    key's label would read the same, then the whole key."""
    first = {key: key.rsplit(".", 1)[0] if key.endswith(".name") else key.rsplit(".", 1)[-1]
             for key in keys}
    taken = list(first.values())
    return {key: short if taken.count(short) == 1 else key for key, short in first.items()}


def _axis(key: str, values: Any, where: str, short: str) -> list[tuple[str, dict[str, Any]]]:
    """A grid axis as (label, {dotted key: value}) choices, labelled ``short=value``."""
    if not isinstance(values, list) or not values:
        raise ConfigError(f"{where}: grid.{key} must be a non-empty list")
    if key != "cases":
        return [(f"{short}={_label(v)}", {key: v}) for v in values]
    axis = []
    for i, case in enumerate(values):
        if not isinstance(case, dict) or not case:
            raise ConfigError(f"{where}: grid.cases[{i}] must be a mapping of dotted keys")
        settings = {k: v for k, v in case.items() if k != "label"}
        label = str(case.get("label") or ",".join(f"{k}={_label(v)}"
                                                  for k, v in settings.items()))
        axis.append((label, settings))
    return axis


def _label(value: Any) -> str:
    if isinstance(value, dict):
        return str(value.get("name", value))
    return str(value)


def resolved_dict(config: ExperimentConfig) -> dict[str, Any]:
    """The config with every default filled in, components resolved to their full trees
    (nested components and identities included), as plain data (config.resolved.yaml)."""
    from memlab.spec import resolve

    data = config.model_dump(mode="json", exclude={"chunker", "retrieval"})
    for dotted, kind in COMPONENT_FIELDS.items():
        spec = _get_dotted(config, dotted)
        if spec is not None:
            node = data
            *parents, last = dotted.split(".")
            for part in parents:
                node = node[part]
            node[last] = resolve(kind, spec, template_dirs=tuple(config.template_dirs))
    return data


def flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}} -> {"a.b": 1}`` for MLflow params."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out.update(flatten(value, f"{name}."))
        else:
            out[name] = value
    return out
