"""One way to name, build and resolve a component of any kind.

A component is named in YAML or Python as a registry name (``"bm25"``), a
``{name, params}`` mapping (or the config's pydantic ``Spec``) or an already built
instance. :func:`build` turns any of these into an object; :func:`resolve` turns any of
these into the *full* spec — every constructor default filled in, nested components
(the embedder inside ``dense`` inside ``hybrid`` inside a memory) resolved too — which is
what a run records, so a change of a default is visible in ``config.resolved.yaml`` and
MLflow.

Components derive ``params()`` from their constructor signature (scikit-learn's
``get_params``): a constructor only stores each keyword argument under its own name, and
:class:`Component` reads them back. A class declares which parameters are components
themselves in ``nested`` (parameter -> kind) and, rarely, an attribute of another name
in ``param_attrs``.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from functools import lru_cache
from typing import Any, ClassVar

from memlab.errors import ConfigError

#: A component as a name, a ``{name, params}`` mapping, a pydantic Spec or an instance.
SpecLike = Any
SPEC_KEYS = frozenset({"name", "params", "identity"})


class Component:
    """Mixin: ``params()`` read off the constructor's keyword parameters."""

    #: constructor parameter -> attribute holding it, where the names differ
    param_attrs: ClassVar[Mapping[str, str]] = {}
    #: constructor parameters that are components themselves: parameter -> kind
    nested: ClassVar[Mapping[str, str]] = {}
    #: numeric parameters -> their bounds (:func:`memlab.errors.check_number`'s keywords),
    #: checked by :meth:`check_bounds` from a component's ``check_params``
    bounds: ClassVar[Mapping[str, Mapping[str, Any]]] = {}

    def params(self) -> dict[str, Any]:
        return constructor_params(self)

    def check_bounds(self, owner: str) -> None:
        """Raise a ConfigError for the first parameter outside its :attr:`bounds` (the
        message names ``owner``, e.g. ``bm25: b must be a number in [0, 1], got 2``)."""
        from memlab.errors import check_numbers

        check_numbers(owner, self.params(), self.bounds)


def constructor_params(obj: Any) -> dict[str, Any]:
    """``{parameter: current value}`` for every keyword parameter of ``type(obj)``."""
    cls: Any = type(obj)
    attrs = getattr(cls, "param_attrs", {})
    return {name: getattr(obj, attrs.get(name, name)) for name in _parameter_names(cls)}


@lru_cache(maxsize=256)
def _parameter_names(cls: type) -> tuple[str, ...]:
    signature = inspect.signature(cls)
    return tuple(p.name for p in signature.parameters.values()
                 if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD))


def is_spec(value: Any) -> bool:
    """True for a name, a ``{name, params}`` mapping or a pydantic Spec (not an instance)."""
    return isinstance(value, str | Mapping) or _is_pydantic(value)


def not_a_component(value: Any) -> bool:
    """True for a value that can be neither a spec nor a built component (a number, a
    list, None): what a misplaced YAML value looks like where a component belongs."""
    return value is None or isinstance(value, bool | int | float | complex | list | tuple
                                       | set | frozenset | bytes)


def _a(kind: str) -> str:
    return f"{'an' if kind[:1] in 'aeiou' else 'a'} {kind}"


def _misplaced(kind: str, value: Any) -> str:
    return (f"expected {_a(kind)}: a name, {{name: ..., params: {{...}}}} or a built "
            f"{kind}, got {value!r}")


def _is_pydantic(value: Any) -> bool:
    return hasattr(value, "model_dump") and hasattr(type(value), "model_fields")


def spec_parts(kind: str, spec: SpecLike) -> tuple[str, dict[str, Any]]:
    """``"bm25"`` / ``{name: bm25, params: {...}}`` / ``Spec`` -> ``(name, params)``."""
    if isinstance(spec, str):
        return spec, {}
    if _is_pydantic(spec):
        spec = spec.model_dump()
    if not isinstance(spec, Mapping) or not isinstance(spec.get("name"), str):
        raise ConfigError(f"a {kind} spec needs a 'name': write a name or "
                          f"{{name: ..., params: {{...}}}}, got {spec!r}")
    extra = sorted(set(spec) - SPEC_KEYS)
    if extra:
        raise ConfigError(f"{kind} spec has unknown key(s) {', '.join(extra)}; "
                          "write {name: ..., params: {...}}")
    params = spec.get("params") or {}
    if not isinstance(params, Mapping):
        raise ConfigError(f"{kind} spec '{spec['name']}': params must be a mapping, "
                          f"got {type(params).__name__}")
    return spec["name"], dict(params)


def build(kind: str, spec: SpecLike) -> Any:
    """The component ``spec`` names (an instance is returned as it is), after the checks of
    config validation that need nothing but the spec (:func:`problems` without its value
    checks: names, required parameters, numeric bounds, nested specs); a component's own
    ``check_params`` (a model file, a choice) runs when it is first used, as before."""
    if not is_spec(spec):
        if not_a_component(spec):
            raise ConfigError(f"cannot build {_a(kind)}: {_misplaced(kind, spec)}")
        return spec
    from memlab.components import registry

    name, params = spec_parts(kind, spec)
    registry(kind).get(name)  # an unknown name: UnknownComponentError, with its suggestion
    found = problems(kind, spec, kind, values=False)
    if found:
        raise ConfigError(f"{kind} '{name}' cannot be built:\n"
                          + "\n".join(f"  {p}" for p in found))
    return registry(kind).build(name, params)


def resolve(kind: str, spec: SpecLike, *, template_dirs: tuple[str, ...] = ()
            ) -> dict[str, Any]:
    """The full spec ``{name, params}`` with every default filled in, nested components
    resolved as well; templates, embedders and LLMs add an ``identity``."""
    if kind == "template":
        return _resolve_template(spec, template_dirs)
    from memlab.components import registry

    reg = registry(kind)
    if is_spec(spec):
        name, given = spec_parts(kind, spec)
        reg.check_params(name, given)
    elif not_a_component(spec) or not _has_params(spec):
        raise ConfigError(f"cannot resolve {_a(kind)}: {_misplaced(kind, spec)}")
    else:
        name, given = reg.name_of(spec), spec.params()
    factory = reg.get(name)
    full = {p.name: given.get(p.name, p.default) for p in reg.params(name)}
    full.update({k: v for k, v in given.items() if k not in full})  # **kwargs factories
    for key, sub_kind in getattr(factory, "nested", {}).items():
        value = full.get(key)
        if value is None and ":" in sub_kind:
            value = {}  # a fixed component's params left out: its defaults
        if isinstance(value, list | tuple):  # a list of components (an ensemble's parts)
            full[key] = [_resolve_nested(sub_kind, v, template_dirs)
                         if is_spec(v) or _has_params(v) else v for v in value]
        elif value is not None and (is_spec(value) or _has_params(value)):
            full[key] = _resolve_nested(sub_kind, value, template_dirs)
    out: dict[str, Any] = {"name": name, "params": plain(full)}
    identity = _identity(kind, name, full)
    if identity:
        out["identity"] = identity
        _compare_recorded(kind, name, spec, identity)
    return out


def _compare_recorded(kind: str, name: str, spec: Any, identity: dict[str, Any]) -> None:
    """A config that records an identity (a run's ``config.resolved.yaml`` run again)
    whose model or template is no longer the one resolved here: warned, since the new run
    records the new identity and its numbers may differ."""
    if _is_pydantic(spec):
        spec = spec.model_dump()
    recorded = spec.get("identity") if isinstance(spec, Mapping) else None
    if not isinstance(recorded, Mapping):
        return
    changed = [key for key in identity if key != "path" and key in recorded
               and recorded[key] != identity[key]]
    if changed:
        import warnings

        from memlab.errors import MemlabWarning

        warnings.warn(MemlabWarning(
            f"{kind} '{name}': the config records " + ", ".join(
                f"{key} {recorded[key]}" for key in changed) + "; here it resolves to "
            + ", ".join(f"{identity[key]}" for key in changed)
            + " (another model or template file: the numbers may differ)"), stacklevel=3)


def _resolve_nested(sub_kind: str, value: Any, template_dirs: tuple[str, ...]) -> Any:
    """A nested component's full spec; ``kind:name`` marks a parameter that holds only
    the params of one fixed component (hybrid's ``bm25``/``dense``)."""
    kind, _, fixed = sub_kind.partition(":")
    if not fixed:
        return resolve(kind, value, template_dirs=template_dirs)
    if isinstance(value, Mapping):
        value = {"name": fixed, "params": dict(value)}
    return resolve(kind, value, template_dirs=template_dirs)["params"]


def problems(kind: str, spec: SpecLike, path: str, *,
             template_dirs: tuple[str, ...] = (), values: bool = True) -> list[str]:
    """Every problem of ``spec`` and its nested components, each prefixed with its YAML
    path (``retrieval.params.dense.embedder.name: unknown embedder ...``); ``values:
    False`` leaves out what the components' own ``check_params`` refuse."""
    if kind == "template":
        try:
            _resolve_template(spec, template_dirs)
        except ConfigError as exc:
            return [f"{path}.name: {exc}"]
        return []
    if not is_spec(spec):
        return [f"{path}: {_misplaced(kind, spec)}"] if not_a_component(spec) else []
    try:
        name, params = spec_parts(kind, spec)
    except ConfigError as exc:
        return [f"{path}: {exc}"]
    return _param_problems(kind, name, params, path, f"{path}.params", template_dirs, values)


def _param_problems(kind: str, name: str, params: dict[str, Any], path: str, where: str,
                    template_dirs: tuple[str, ...], values: bool = True) -> list[str]:
    from memlab.components import registry
    from memlab.registry import _accepts_var_kwargs

    reg = registry(kind)
    try:
        factory = reg.get(name)
    except ConfigError as exc:
        return [f"{path}.name: {exc}"]
    accepted = reg.params(name)
    names = sorted(p.name for p in accepted)
    out = []
    if not _accepts_var_kwargs(factory):
        unknown = sorted(set(params) - set(names))
        out += [f"{where}.{key}: not a parameter of {kind} '{name}' "
                f"(valid: {', '.join(names) or 'none'})" for key in unknown]
    out += [f"{where}.{p.name}: required by {kind} '{name}'" for p in accepted
            if p.required and p.name not in params]
    known = {key: value for key, value in params.items() if key in names}
    out += _bound_problems(kind, name, factory, known, where)  # beside unknown names too
    if not out and values:
        out += _value_problems(factory, params, where)
    if isinstance(factory, type):  # a class memlab would call with arguments it refuses
        from memlab.components import protocol_problems

        out += [f"{path}.name: {kind} '{name}': {problem}"
                for problem in protocol_problems(kind, factory)]
    for key, sub_kind in getattr(factory, "nested", {}).items():
        value = params.get(key)
        sub, _, fixed = sub_kind.partition(":")
        if fixed and isinstance(value, Mapping):
            out += _param_problems(sub, fixed, dict(value), f"{where}.{key}", f"{where}.{key}",
                                   template_dirs, values)
        elif fixed and value is not None and not_a_component(value):
            out.append(f"{where}.{key}: expected the parameters of {sub} '{fixed}' as a "
                       f"mapping ({{...}}) or a built {sub}, got {value!r}")
        elif isinstance(value, list | tuple) and not fixed:
            for i, part in enumerate(value):
                out += problems(sub, part, f"{where}.{key}[{i}]", template_dirs=template_dirs,
                                values=values)
        elif value is not None and not fixed:
            out += problems(sub, value, f"{where}.{key}", template_dirs=template_dirs,
                            values=values)
    return out


#: Parameters every component of a kind takes, checked the same way for all of them
#: (:func:`memlab.errors.check_number`'s bounds): a strategy's ``k`` and ``threshold``.
COMMON_BOUNDS: dict[str, dict[str, dict[str, Any]]] = {
    "retrieval": {"k": {"low": 0, "integer": True, "optional": True},
                  "threshold": {"optional": True}},
}


def _bound_problems(kind: str, name: str, factory: Any, params: dict[str, Any], where: str
                    ) -> list[str]:
    """What :data:`COMMON_BOUNDS` and the component's own :attr:`Component.bounds` refuse
    among ``params``: one line per parameter, each with its YAML path."""
    from memlab.errors import check_number

    bounds = {**COMMON_BOUNDS.get(kind, {}), **getattr(factory, "bounds", {})}
    out = []
    for key, value in params.items():
        if key in bounds:
            try:
                check_number(f"{kind} '{name}': {key}", value, **bounds[key])
            except ConfigError as exc:
                out.append(f"{where}.{key}: {exc}")
    return out


def _value_problems(factory: Any, params: dict[str, Any], where: str) -> list[str]:
    """What a component's own ``check_params`` refuses (a weight outside [0, 1], an unknown
    mode), found before a run starts: only classes that define it, whose constructors just
    keep their parameters (nested components are built on first use, not here)."""
    if not isinstance(factory, type) or not callable(getattr(factory, "check_params", None)):
        return []
    try:
        factory(**params).check_params()
    except ConfigError as exc:
        return [f"{where}: {exc}"]
    except (TypeError, ValueError):  # left to the run, which names the component
        return []
    return []


def _has_params(value: Any) -> bool:
    return callable(getattr(value, "params", None))


def _resolve_template(spec: SpecLike, template_dirs: tuple[str, ...]) -> dict[str, Any]:
    import hashlib

    from memlab.prompts import get_template

    name, params = spec_parts("template", spec)
    if params:
        raise ConfigError(f"template '{name}' takes no params (got {', '.join(params)}); "
                          "templates take variables when rendered")
    template = get_template(name, template_dirs)
    identity = {"version": template.version,
                "sha256": hashlib.sha256(template.path.read_bytes()).hexdigest(),
                "path": str(template.path)}
    _compare_recorded("template", name, spec, identity)
    return {"name": name, "params": {}, "identity": identity}


def _identity(kind: str, name: str, params: dict[str, Any]) -> dict[str, Any]:
    """What names the weights behind an embedder (local ones only: no network here)."""
    if kind != "embedder" or not getattr(_factory(kind, name), "local_identity", False):
        return {}
    try:
        return {"model_id": build(kind, {"name": name, "params": params}).model_id}
    except Exception as exc:  # an unloadable model fails when it is used, with context
        return {"model_id": f"unknown ({type(exc).__name__}: {str(exc)[:160]})"}


def _factory(kind: str, name: str) -> Any:
    from memlab.components import registry

    return registry(kind).get(name)


def differences(old: Any, new: Any, at: str = "") -> list[tuple[str, Any, Any]]:
    """Dotted keys whose values differ between two config (or spec) trees, with both
    values."""
    if isinstance(old, dict) and isinstance(new, dict):
        out: list[tuple[str, Any, Any]] = []
        for key in sorted({*old, *new}, key=str):
            out += differences(old.get(key), new.get(key), f"{at}.{key}" if at else str(key))
        return out
    return [] if old == new else [(at or "config", old, new)]


def describe_differences(old: Any, new: Any, limit: int = 6) -> str:
    """:func:`differences` in words (``k: 10 -> 3; base.name: 'bm25' -> 'dense'``, the
    first ``limit`` of them); "" when the trees are equal."""
    differ = differences(old, new)
    shown = "; ".join(f"{key}: {a!r} -> {b!r}" for key, a, b in differ[:limit])
    return shown + (f" (and {len(differ) - limit} more)" if len(differ) > limit else "")


def plain(value: Any) -> Any:
    """``value`` as YAML/JSON-safe data (tuples -> lists, instances -> their spec)."""
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        items = [plain(v) for v in value]
        return sorted(items, key=repr) if isinstance(value, set | frozenset) else items
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if _is_pydantic(value):
        return plain(value.model_dump(mode="json"))
    if _has_params(value):
        return {"name": type(value).__name__, "params": plain(value.params())}
    if callable(value):
        return repr(value)
    return str(value)


__all__ = ["Component", "build", "constructor_params", "is_spec", "plain", "resolve",
           "spec_parts"]
