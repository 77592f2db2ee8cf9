"""memlab.spec: one way to build and resolve components, and run records that hold the
whole resolved tree (every default), the ingest-time LLM calls, and nothing unused."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from memlab.errors import ConfigError, MemlabError
from memlab.eval.config import expand_grid, load_config, resolved_dict
from memlab.eval.items import read_items
from memlab.eval.run import evaluate
from memlab.eval.sweep import select_variants
from memlab.spec import Component, build, constructor_params, resolve

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory,
                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEMLAB_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "cache"))


def _config(**extra: Any) -> dict[str, Any]:
    return {"name": "t", "dataset": {"name": "synthetic"}, "tracking": {"mlflow": False},
            **extra}


def test_locomo_retrieval_config_resolves_every_default_and_the_embedder_identity() -> None:
    config = load_config(ROOT / "experiments" / "locomo-retrieval.yaml")
    memory = resolved_dict(config)["memory"]
    hybrid = memory["params"]["retrieval"]
    assert hybrid["name"] == "hybrid" and hybrid["params"]["rrf_k"] == 60
    assert hybrid["params"]["bm25"] == {"k": 5, "threshold": None, "k1": 1.5, "b": 0.75,
                                        "method": "lucene", "stopwords": "en",
                                        "stemmer": "snowball"}
    embedder = hybrid["params"]["dense"]["embedder"]
    assert embedder["name"] == "sentence-transformers"
    assert embedder["params"] == {"model": "all-MiniLM-L6-v2", "device": "cpu",
                                  "batch_size": 64, "backend": "onnx"}
    assert embedder["identity"]["model_id"].startswith(
        "sentence-transformers:sentence-transformers/all-MiniLM-L6-v2@")
    digest, backend = embedder["identity"]["model_id"].rsplit("@", 1)[1].split("+")
    assert len(digest) == 16 and backend == "onnx-v2"  # weights digest + backend


def test_answer_template_is_recorded_with_version_and_hash() -> None:
    config = load_config(_config(answer={"llm": {"name": "mock"}}))
    template = resolved_dict(config)["answer"]["template"]
    assert template["name"] == "answer_short"
    assert isinstance(template["identity"]["version"], int)
    import hashlib  # the hash of the file itself: a change of wording changes it

    assert template["identity"]["sha256"] == hashlib.sha256(
        Path(template["identity"]["path"]).read_bytes()).hexdigest()


def test_build_accepts_a_name_a_spec_or_an_instance_and_params_round_trip() -> None:
    by_name = build("retrieval", "bm25")
    by_spec = build("retrieval", {"name": "bm25", "params": {"k1": 0.9}})
    assert build("retrieval", by_spec) is by_spec
    assert by_name.params()["k1"] == 1.5 and by_spec.params()["k1"] == 0.9
    assert resolve("retrieval", by_spec) == resolve("retrieval", {"name": "bm25",
                                                                  "params": {"k1": 0.9}})
    with pytest.raises(ConfigError, match="k_1: not a parameter of retrieval 'bm25'"):
        build("retrieval", {"name": "bm25", "params": {"k_1": 1}})


def test_params_are_read_off_the_constructor() -> None:
    class Thing(Component):
        def __init__(self, a: int = 1, b: str = "x") -> None:
            self.a = a
            self.b = b

    assert Thing(b="y").params() == {"a": 1, "b": "y"} == constructor_params(Thing(b="y"))


def test_changing_a_default_through_set_changes_the_resolved_tree_and_the_items(
        tmp_path: Path) -> None:
    base = _config(retrieval={"name": "bm25"})
    plain = evaluate(base, out=tmp_path / "a", progress=False)
    changed = evaluate(base, out=tmp_path / "b", progress=False,
                       overrides=["retrieval.params.b=0.0", "retrieval.params.k1=0.2"])
    trees = [yaml.safe_load((r.run_dir / "config.resolved.yaml").read_text())
             for r in (plain, changed)]
    bm25 = [t["memory"]["params"]["retrieval"]["params"] for t in trees]
    assert (bm25[0]["b"], bm25[0]["k1"]) == (0.75, 1.5)
    assert (bm25[1]["b"], bm25[1]["k1"]) == (0.0, 0.2)
    scores = [[[h["score"] for h in row["retrieved"]] for row in r.items()]
              for r in (plain, changed)]
    assert scores[0] != scores[1]


def test_a_tiered_run_reports_the_retrieval_it_used_not_an_unused_flat_one(
        tmp_path: Path) -> None:
    from memlab.eval.report import report

    config = _config(memory={"name": "tiered", "params": {
        "llm": {"name": "mock"}, "auto_consolidate": False,
        "retrieval": {"name": "dense", "params": {"embedder": "hash"}}}},
        dataset={"name": "synthetic", "probes": {"limit": 6}})
    evaluate(config, out=tmp_path / "tiered", progress=False)
    row = report([tmp_path / "tiered"]).iloc[0]
    assert (row["memory"], row["retrieval"], row["chunker"]) == ("tiered", "dense", "-")
    resolved = yaml.safe_load((tmp_path / "tiered" / "config.resolved.yaml").read_text())
    assert "retrieval" not in resolved and "chunker" not in resolved


def test_a_shorthand_the_memory_would_ignore_is_refused() -> None:
    with pytest.raises(ConfigError, match="memory 'tiered' takes no chunker"):
        load_config(_config(memory={"name": "tiered"}, chunker={"name": "window"}))
    with pytest.raises(ConfigError, match=r"set both here and in memory\.params\.retrieval"):
        load_config(_config(retrieval={"name": "bm25"},
                            memory={"name": "flat", "params": {"retrieval": "dense"}}))


def _failing_extraction(fail_on_error: float) -> dict[str, Any]:
    return _config(chunker={"name": "facts", "params": {
        "llm": {"name": "mock", "params": {"error": "connection refused by the model"}}}},
        retrieval={"name": "bm25"}, fail_on_error=fail_on_error)


def test_failed_ingest_llm_calls_are_counted_and_kept_with_their_messages(
        tmp_path: Path) -> None:
    result = evaluate(_failing_extraction(1.0), out=tmp_path / "run", progress=False)
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    memory = read_items(tmp_path / "run" / "memory.jsonl")
    calls = sum(row["ingest"]["calls"] for row in memory)
    assert calls > 0 and metrics["errors"]["ingest"] == calls == metrics["ingest"]["errors"]
    assert metrics["errors"]["probes"] == 0
    assert all("connection refused by the model" in row["ingest"]["error_messages"][0]
               for row in memory if row["ingest"]["calls"])
    assert result.summary["ingest"]["prompt_tokens"] == 0  # failed calls cost no tokens


def test_fail_on_error_stops_a_run_whose_ingest_calls_fail(tmp_path: Path) -> None:
    with pytest.raises(MemlabError, match=r"LLM calls made while ingesting failed.*"
                                          r"connection refused"):
        evaluate(_failing_extraction(0.2), out=tmp_path / "run", progress=False)


def test_ingest_tokens_are_counted_when_the_calls_succeed(tmp_path: Path) -> None:
    config = _config(chunker={"name": "summary", "params": {"llm": {"name": "mock", "params": {
        "default": "Title: A chat\nOverview: They talked."}}}}, retrieval={"name": "bm25"},
        dataset={"name": "synthetic", "probes": {"limit": 4}})
    result = evaluate(config, out=tmp_path / "run", progress=False)
    ingest = result.summary["ingest"]
    assert ingest["calls"] > 0 and ingest["errors"] == 0
    total = ingest["prompt_tokens"] + ingest["completion_tokens"]
    assert result.summary["tokens"]["ingest"]["total"] == total > 0


def test_top_level_build_evaluate_and_sweep(tmp_path: Path) -> None:
    import memlab

    memory = memlab.build(ROOT / "experiments" / "quickstart.yaml")
    assert type(memory).__name__ == "FlatMemory"
    assert memlab.build("retrieval", "bm25").params()["k1"] == 1.5
    assert memlab.resolve("chunker", "window")["params"] == {"size": 4, "stride": 2}
    with pytest.raises(ConfigError, match="needs a spec"):
        memlab.build("retrieval")
    result = memlab.evaluate(_config(retrieval={"name": "bm25"},
                                     dataset={"name": "synthetic", "probes": {"limit": 3}}),
                             out=tmp_path / "one", progress=False)
    assert result.summary["probes"] == 3
    table = memlab.sweep(_config(dataset={"name": "synthetic", "probes": {"limit": 3}},
                                 grid={"retrieval.name": ["bm25", "none"]}),
                         out=tmp_path / "sweep", progress=False)
    assert list(table["retrieval"]) == ["bm25", "none"]


def test_sweep_only_runs_the_named_cases_in_the_order_given(tmp_path: Path) -> None:
    import memlab

    config = _config(dataset={"name": "synthetic", "probes": {"limit": 2}},
                     grid={"cases": [{"label": "lexical", "retrieval.name": "bm25"},
                                     {"label": "nothing", "retrieval.name": "none"},
                                     {"label": "recent", "retrieval.name": "recency"}]})
    table = memlab.sweep(config, out=tmp_path / "sweep", progress=False,
                         only=["recent", "lexical"])
    assert sorted(table["retrieval"]) == ["bm25", "recency"]
    assert sorted(p.name for p in (tmp_path / "sweep").iterdir()) == [
        "t_lexical", "t_recent"]
    with pytest.raises(ConfigError, match="--only typo: no such grid case; the grid has: "
                                          "lexical, nothing, recent"):
        memlab.sweep(config, out=tmp_path / "other", progress=False, only=["typo"])
    variants = select_variants(expand_grid(config), ["recent", "lexical", "recent"])
    assert [v.name for v in variants] == ["t[recent]", "t[lexical]"]


def test_only_names_a_case_or_some_parts_of_a_label() -> None:
    from memlab.eval.train_reranker import reranker_case

    config = _config(dataset={"name": "synthetic", "probes": {"limit": 2}},
                     grid={"cases": [{"label": "a", "retrieval.name": "bm25"},
                                     {"label": "b", "retrieval.name": "recency"}],
                           "k": [3, 5]})
    names = [v.name for v in select_variants(expand_grid(config), ["b", "a,k=5", "b,k=3"])]
    assert names == ["t[b,k=3]", "t[b,k=5]", "t[a,k=5]"]  # each once, in the order named
    assert [v.name for v in select_variants(expand_grid(config), ["k=3"])] == [
        "t[a,k=3]", "t[b,k=3]"]
    with pytest.raises(ConfigError, match="--only a,k=4: no such grid case; the grid has: "
                                          "a,k=3, a,k=5, b,k=3, b,k=5"):
        select_variants(expand_grid(config), ["a,k=4"])
    with pytest.raises(ConfigError, match=r"--only a: names 2 grid cases; name one "
                                          r"\(a,k=3, a,k=5\)"):
        reranker_case(config, "a")
    assert reranker_case(config, "a,k=5").name == "t[a,k=5]"


def test_set_under_grid_takes_the_rest_as_one_dotted_grid_key() -> None:
    config = _config(grid={"retrieval.name": ["bm25", "dense"], "retrieval.params.k1": [0.9]})
    variants = expand_grid(config, ["grid.retrieval.name=[bm25]",
                                    "grid.retrieval.params.k1=[1.2, 2.0]", "grid.k=[4]"])
    assert [v.name for v in variants] == ["t[retrieval=bm25,k1=1.2,k=4]",
                                          "t[retrieval=bm25,k1=2.0,k=4]"]
    with pytest.raises(ConfigError, match=r"grid\.k must be a non-empty list"):
        expand_grid(config, ["grid.k=3"])


def test_grid_labels_name_a_dotted_key_by_its_last_part_unless_two_would_read_alike(
        ) -> None:
    config = _config(grid={"retrieval.name": ["bm25"], "retrieval.params.k1": [0.9],
                           "retrieval.params.b": [0.5], "k": [5],
                           "retrieval.params.k": [3]})
    assert [v.name for v in expand_grid(config)] == [
        "t[retrieval=bm25,k1=0.9,b=0.5,k=5,retrieval.params.k=3]"]


def test_loading_a_config_checks_wrapper_values_before_any_run() -> None:
    bad = _config(retrieval={"name": "budget", "params": {"base": {
        "name": "time_aware", "params": {"mode": "sideways", "base": {
            "name": "prf", "params": {"weight": 2, "base": "bm25"}}}}}})
    with pytest.raises(ConfigError) as info:
        load_config(bad)
    assert str(info.value).splitlines()[1:] == [
        "  retrieval.params.base.params: time_aware mode 'sideways' is not known; valid "
        "choices: boost, filter",
        "  retrieval.params.base.params.base.params.weight: retrieval 'prf': weight must be "
        "a number in [0, 1], got 2"]
    nested = _config(retrieval={"name": "hybrid", "params": {
        "fusion": "max", "dense": {"index": "annoy"}, "bm25": {"stemmer": "porter"}}})
    with pytest.raises(ConfigError) as info:
        load_config(nested)
    assert str(info.value).splitlines()[1:] == [
        "  retrieval.params: hybrid fusion 'max' is not known; valid choices: rrf, weighted",
        "  retrieval.params.bm25: bm25 stemmer 'porter' is not known; valid choices: "
        "'snowball', null",
        "  retrieval.params.dense: dense index 'annoy' is not known; valid choices: exact, "
        "faiss, faiss-ivf, faiss-hnsw"]
    # a cross-encoder whose model is not trained yet still validates (loading is the run's)
    later = _config(retrieval={"name": "cross_encoder", "params": {
        "model": "runs/rerankers/not-trained-yet", "base": "bm25"}})
    assert load_config(later).memory.params["retrieval"]["name"] == "cross_encoder"


def test_a_shape_error_and_a_component_error_are_listed_at_once() -> None:
    bad = _config(k=-3, dataset={"name": "synthetic", "probes": {"sampel": 3}},
                  retrieval={"name": "hybrid", "params": {"alpha": 2}})
    with pytest.raises(ConfigError) as info:
        load_config(bad)
    lines = str(info.value).splitlines()[1:]
    assert lines[0].startswith("  dataset.probes.sampel: Extra inputs are not permitted; "
                               "did you mean 'sample'?")
    assert lines[1:] == [
        "  k: Input should be greater than or equal to 1",
        "  retrieval.params.alpha: retrieval 'hybrid': alpha must be a number in [0, 1], "
        "got 2"]
    # a bad plugins: value is reported alone (the components it registers are unknown)
    with pytest.raises(ConfigError) as info:
        load_config(_config(plugins="my_plugin", memory={"name": "mine"}))
    assert [line.split(":")[0] for line in str(info.value).splitlines()[1:]] == ["  plugins"]
    # a component problem inside a list the shape refused is left to the shape error
    with pytest.raises(ConfigError) as info:
        load_config(_config(scorers=["bleu1", 3], retrieval={"name": "bm25", "params": {
            "k1": -1}}))
    assert [line.split(":")[0] for line in str(info.value).splitlines()[1:]] == [
        "  scorers.1"]


def test_loading_a_config_checks_every_kind_of_component_before_any_run(
        tmp_path: Path) -> None:
    """Chunkers, embedders, LLM backends, memory architectures and stores refuse bad values
    at validation too, each line naming its YAML path; nothing is loaded or contacted."""
    bad = _config(
        chunker={"name": "token_window", "params": {"max_tokens": 64, "overlap": 64}},
        retrieval={"name": "mmr", "params": {"lambda_mult": 1.5, "embedder": {
            "name": "ensemble", "params": {"embedders": ["hash", {"name": "hash", "params": {
                "dim": 0}}], "weights": [1, -1]}}}},
        answer={"llm": {"name": "llamacpp", "params": {"n_ctx": 0, "temperature": -1}}},
        judge={"llm": {"name": "openai", "params": {"model": "m", "top_p": 0}}})
    with pytest.raises(ConfigError) as info:
        load_config(bad)
    assert str(info.value).splitlines()[1:] == [
        "  chunker.params: chunker 'token_window': overlap must be an integer from 0 to "
        "max_tokens - 1 (63), got 64",
        "  retrieval.params: mmr: lambda_mult must be a number in [0, 1], got 1.5",
        "  retrieval.params.embedder.params: ensemble weights must be >= 0 with a positive "
        "sum, got [1.0, -1.0]",
        "  retrieval.params.embedder.params.embedders[1].params: embedder 'hash': dim must be "
        "an integer >= 1, got 0",
        "  answer.llm.params.n_ctx: llm 'llamacpp': n_ctx must be an integer >= 1, got 0",
        "  answer.llm.params.temperature: llm 'llamacpp': temperature must be a number >= 0, "
        "got -1",  # every value out of range, not the first one only
        "  judge.llm.params.top_p: llm 'openai': top_p must be a number in (0, 1], got 0"]
    missing = tmp_path / "nowhere.gguf"
    memory = _config(memory={"name": "tiered", "params": {
        "consolidate_by": "week", "llm": {"name": "llamacpp", "params": {
            "model_path": str(missing)}}, "store": {"name": "pgvector", "params": {
                "table": "units; drop table x"}}}})
    with pytest.raises(ConfigError) as info:
        load_config(memory)
    assert str(info.value).splitlines()[1:] == [
        "  memory.params: memory 'tiered': consolidate_by 'week' is not known; valid "
        "choices: session, batch",
        f"  memory.params.llm.params: llm 'llamacpp': model_path: no model file at {missing}",
        "  memory.params.store.params: pgvector store: table 'units; drop table x' is not a "
        "plain SQL name"]
    extracted = _config(memory={"name": "extracted", "params": {
        "similar_threshold": 0.9, "same_threshold": 0.8}})
    with pytest.raises(ConfigError, match=r"memory\.params: memory 'extracted': "
                       r"similar_threshold \(0\.9\) must not exceed same_threshold \(0\.8\)"):
        load_config(extracted)
    templates = _config(retrieval={"name": "keys", "params": {
        "template": "nope", "base": {"name": "full_context", "params": {
            "tokenizer": "gpt-4"}}}},
        chunker={"name": "facts", "params": {"template": "extract_facts", "max_tokens": 0}})
    with pytest.raises(ConfigError) as info:
        load_config(templates)
    lines = str(info.value).splitlines()[1:]
    assert lines[0] == ("  chunker.params.max_tokens: chunker 'facts': max_tokens must be an "
                        "integer >= 1, got 0")
    assert lines[1].startswith("  retrieval.params: keys: template: unknown prompt template "
                               "'nope'. Valid choices: agent_chat, ")
    assert lines[2] == ("  retrieval.params.base.params: full_context: tokenizer 'gpt-4' is "
                        "not a Qwen tokenizer; e.g. qwen2.5, qwen3:4b, qwen3.6-27b")
    # the same checks guard a component built in Python, at its first use
    from memlab.components import registry

    with pytest.raises(ConfigError, match="llm 'llamacpp': temperature must be a number "
                       ">= 0, got -1"):
        registry("llm").build("llamacpp", {"temperature": -1}).cache_identity()
    with pytest.raises(ConfigError, match="llm 'openai': max_tokens must be an integer >= 1"):
        registry("llm").build("openai", {"model": "m"}).generate(
            [{"role": "user", "content": "hi"}], max_tokens=0)


def test_every_strategys_k_and_threshold_are_checked_at_validation() -> None:
    bad = _config(retrieval={"name": "budget", "params": {"threshold": "high", "base": {
        "name": "bm25", "params": {"k": -3}}}})
    with pytest.raises(ConfigError) as info:
        load_config(bad)
    assert str(info.value).splitlines()[1:] == [
        "  retrieval.params.threshold: retrieval 'budget': threshold must be a number or "
        "null, got 'high'",
        "  retrieval.params.base.params.k: retrieval 'bm25': k must be an integer >= 0 or "
        "null, got -3"]
    fine = _config(retrieval={"name": "hybrid", "params": {"k": None, "threshold": 0.2}})
    assert load_config(fine).memory.params["retrieval"]["params"]["k"] is None


def _bounded_components() -> list[tuple[str, str, dict[str, Any]]]:
    from memlab.components import registry

    out = []
    for kind in ("chunker", "retrieval", "embedder", "store", "llm", "memory"):
        reg = registry(kind)
        for name in reg.names():
            bounds = getattr(reg.get(name), "bounds", {})
            if bounds:
                out.append((kind, name, dict(bounds)))
    return out


def _outside(bounds: dict[str, Any]) -> Any:
    if bounds.get("low") is not None:
        return bounds["low"] - 1
    if bounds.get("high") is not None:
        return bounds["high"] + 1
    return "many"


@pytest.mark.parametrize(("kind", "name", "bounds"), _bounded_components(),
                         ids=lambda v: v if isinstance(v, str) else "")
def test_every_bounded_parameter_is_checked_at_validation_and_build(
        kind: str, name: str, bounds: dict[str, Any]) -> None:
    """Each parameter a component bounds is refused out of range, with its YAML path, by
    config validation and by ``memlab.build``; its default is within range."""
    from memlab.components import registry
    from memlab.spec import problems

    defaults = {p.name: p.default for p in registry(kind).params(name)}
    for key, limits in bounds.items():
        assert key in defaults, f"{kind} '{name}' bounds {key}, which it does not take"
        assert problems(kind, {"name": name, "params": {key: defaults[key]}}, kind) == []
        for bad in (_outside(limits), "many"):
            found = problems(kind, {"name": name, "params": {key: bad}}, kind)
            assert any(p.startswith(f"{kind}.params.{key}: ") for p in found), (key, bad, found)
            with pytest.raises(ConfigError, match=rf"{kind}\.params\.{key}: {kind} '{name}'"):
                build(kind, {"name": name, "params": {key: bad}})


def test_build_reports_every_bad_value_with_its_path_including_nested_ones() -> None:
    with pytest.raises(ConfigError) as info:
        build("retrieval", {"name": "time_aware", "params": {
            "time_weight": -1, "base": {"name": "hybrid", "params": {
                "candidates": 0, "alpha": 2, "bm25": {"b": 1.5}}}}})
    assert str(info.value).splitlines() == [
        "retrieval 'time_aware' cannot be built:",
        "  retrieval.params.time_weight: retrieval 'time_aware': time_weight must be a "
        "number >= 0, got -1",
        "  retrieval.params.base.params.candidates: retrieval 'hybrid': candidates must be "
        "an integer >= 1, got 0",
        "  retrieval.params.base.params.alpha: retrieval 'hybrid': alpha must be a number in "
        "[0, 1], got 2",
        "  retrieval.params.base.params.bm25.b: retrieval 'bm25': b must be a number in "
        "[0, 1], got 1.5"]
