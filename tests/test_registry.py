"""The generic component registry: lazy targets, parameter checks, did-you-mean."""

from __future__ import annotations

import pytest

from memlab.errors import ConfigError, UnknownComponentError
from memlab.registry import Registry


class Window:
    """Window of turns."""

    def __init__(self, size: int = 4, stride: int = 2) -> None:
        self.size = size
        self.stride = stride


def needs_model(model: str, temperature: float = 0.0) -> dict:
    return {"model": model, "temperature": temperature}


@pytest.fixture
def reg() -> Registry:
    r: Registry = Registry("chunker")
    r.register("window", Window)
    r.register("needs", needs_model)
    r.register("lazy-json", "json:dumps")
    return r


def test_build_passes_params(reg: Registry) -> None:
    w = reg.build("window", {"size": 8})
    assert (w.size, w.stride) == (8, 2)


def test_lazy_target_imported_on_first_get(reg: Registry) -> None:
    import json

    assert reg.get("lazy-json") is json.dumps


def test_unknown_name_suggests_close_matches_and_lists_choices(reg: Registry) -> None:
    with pytest.raises(UnknownComponentError) as info:
        reg.get("windw")
    message = str(info.value)
    assert "unknown chunker 'windw'" in message
    assert "Did you mean 'window'?" in message
    assert "Valid choices: lazy-json, needs, window" in message


def test_unknown_parameter_lists_valid_ones(reg: Registry) -> None:
    expected = r"no parameter\(s\) sise; valid parameters: size, stride"
    with pytest.raises(ConfigError, match=expected):
        reg.build("window", {"sise": 3})


def test_missing_required_parameter(reg: Registry) -> None:
    with pytest.raises(ConfigError, match=r"'needs' needs parameter\(s\): model"):
        reg.build("needs", {})


def test_describe_lists_params_with_defaults(reg: Registry) -> None:
    rows = {row["name"]: row for row in reg.describe() if row["name"] != "lazy-json"}
    assert rows["window"]["summary"] == "Window of turns."
    assert rows["window"]["params"] == [
        {"name": "size", "default": 4, "type": "int", "required": False},
        {"name": "stride", "default": 2, "type": "int", "required": False},
    ]
    assert rows["needs"]["params"][0] == {
        "name": "model", "default": None, "type": "str", "required": True
    }


def test_double_registration_of_a_different_target_fails(reg: Registry) -> None:
    with pytest.raises(ConfigError, match=r"already registered .* pass replace=True"):
        reg.register("window", needs_model)


def test_a_plugin_cannot_silently_take_a_lazily_registered_built_in_name(
        reg: Registry) -> None:
    """Built-ins are registered as strings (imported on first use): a plugin class under
    the same name is refused too, or its runs would be recorded under the built-in's name."""
    import json

    with pytest.raises(ConfigError, match=r"lazy-json' is already registered to json:dumps"):
        reg.register("lazy-json", Window)
    with pytest.raises(ConfigError, match="already registered"):
        reg.register("lazy-json", "json:loads")
    reg.register("lazy-json", json.dumps)  # the object the string names: the same entry
    reg.register("lazy-json", "json:dumps")
    reg.register("lazy-json", Window, replace=True)  # meant: rebound
    assert reg.get("lazy-json") is Window


def test_replace_rebinds_a_name_as_an_edited_notebook_cell_needs(reg: Registry) -> None:
    reg.register("window", needs_model, replace=True)
    assert reg.get("window") is needs_model

    @reg.register("window", replace=True)
    def edited(**params: object) -> dict:
        return dict(params)

    assert reg.get("window") is edited


def test_broken_lazy_target_fails_with_a_clear_message() -> None:
    r: Registry = Registry("embedder")
    r.register("ghost", "memlab_no_such_module:Thing")
    r.register("typo", "json:dumpz")
    with pytest.raises(ConfigError, match="embedder 'ghost' could not be imported from "
                                          "memlab_no_such_module"):
        r.get("ghost")
    with pytest.raises(ConfigError, match="embedder 'typo': json has no dumpz"):
        r.get("typo")


def test_did_you_mean_names_the_closest_known_names_or_nothing() -> None:
    from memlab.errors import did_you_mean

    known = ["bm25", "dense", "hybrid", "multigrain"]
    assert did_you_mean("hybird", known) == "did you mean 'hybrid'?"
    assert did_you_mean("dens", known, n=3) == "did you mean 'dense'?"
    assert did_you_mean("xyz", known) == ""
    assert did_you_mean("bm5", {"bm25": 1, "bm15": 2}, n=3) == "did you mean 'bm25' or 'bm15'?"
    assert did_you_mean("multigran", known, cutoff=0.99) == ""
