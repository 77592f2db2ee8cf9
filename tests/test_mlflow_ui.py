"""The MLflow UI as a new user sees it, in a real browser: headless Chromium (Debian's
``chromium`` package, never a downloaded one) driven by Playwright, against a real
``mlflow server`` on 127.0.0.1 after a small answered run (mock LLM, so it is quick).

It checks through the rendered pages that the run and its dataset, a trace with its
spans and the registered prompts are there, and saves a screenshot of each page under
``test-artifacts/mlflow-ui/`` (the README shows the trace view).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from memlab.data.paths import PROJECT_ROOT
from memlab.eval.run import evaluate
from memlab.eval.tracking import ui_link

CHROMIUM = Path(os.environ.get("MEMLAB_CHROMIUM", "/usr/bin/chromium"))
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]
SHOTS = Path(os.environ.get("MEMLAB_TEST_ARTIFACTS", PROJECT_ROOT / "test-artifacts")) / \
    "mlflow-ui"
WAIT_MS = 90_000  # a busy two-core machine renders the first page slowly

CONFIG = {"name": "ui", "dataset": {"name": "synthetic"}, "retrieval": {"name": "bm25"},
          "k": 5, "tracking": {"experiment": "memlab-ui-test"},
          "answer": {"llm": {"name": "mock", "params": {"responses": ["blue", "2"]}},
                     "template": {"name": "answer_short"}},
          "judge": {"llm": {"name": "mock", "params": {"responses": ["yes", "no"]}}}}


@pytest.fixture
def page(tmp_path: Path) -> Iterator[Any]:
    """A page of a fresh headless Chromium profile."""
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright")
    if not CHROMIUM.exists():
        pytest.skip(f"no Chromium at {CHROMIUM}: apt-get install -y chromium")
    with sync_api.sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path / "profile"), executable_path=str(CHROMIUM), headless=True,
            args=FLAGS, viewport={"width": 1400, "height": 900})
        context.set_default_timeout(WAIT_MS)
        try:
            yield context.new_page()
        finally:
            context.close()


@pytest.mark.slow
def test_run_dataset_trace_and_prompts_are_visible_in_the_ui(served: Any, page: Any,
                                                             tmp_path: Path) -> None:
    from playwright.sync_api import expect

    expect.set_options(timeout=WAIT_MS)
    result = evaluate(CONFIG, out=tmp_path / "run", progress=False)
    run = served.get_run(result.mlflow_run_id)
    base = f"{served.tracking_uri}/#/experiments/{run.info.experiment_id}"
    assert ui_link(result.run_dir, uri=served.tracking_uri) == \
        f"{base}/overview?workflowType=genai"  # traces: memlab's link is the overview
    SHOTS.mkdir(parents=True, exist_ok=True)

    # the GenAI overview opens on real numbers: 48 traces, their latency and tokens
    page.goto(f"{base}/overview/usage?workflowType=genai")
    expect(page.get_by_text("Token Usage").first).to_be_visible()
    _dismiss_popups(page)
    expect(page.get_by_text("48", exact=True).first).to_be_visible()
    page.screenshot(path=str(SHOTS / "overview.png"))

    # the run with its dataset in the runs table
    page.goto(f"{base}/evaluation-runs?workflowType=genai")
    expect(page.get_by_text(run.info.run_name).first).to_be_visible()
    _dismiss_popups(page)
    expect(page.get_by_text("synthetic-small").first).to_be_visible()
    page.screenshot(path=str(SHOTS / "runs.png"))

    # a probe's trace with its spans and the prompts it rendered
    first = result.items()[0]
    [trace] = [t for t in served.search_traces(locations=[run.info.experiment_id],
                                               run_id=run.info.run_id, max_results=100)
               if t.info.tags["probe_id"] == first["probe_id"]]
    page.goto(f"{base}/traces?workflowType=genai&traceId={trace.info.trace_id}")
    expect(page.get_by_text(first["question"], exact=True).first).to_be_visible()
    _dismiss_popups(page)
    for span in ("search", "prompt", "generate", "judge", "score"):
        expect(page.get_by_text(span, exact=True).first).to_be_visible()
    expect(page.get_by_text(re.compile(r"2 linked prompts"))).to_be_visible()
    page.screenshot(path=str(SHOTS / "trace.png"))

    # the templates in the experiment's Prompts page, and the evaluation dataset
    page.goto(f"{base}/prompts?workflowType=genai")
    expect(page.get_by_text("memlab.answer_short")).to_be_visible()
    expect(page.get_by_text("memlab.judge_longmemeval")).to_be_visible()
    _dismiss_popups(page)
    page.screenshot(path=str(SHOTS / "prompts.png"))
    page.goto(f"{base}/datasets?workflowType=genai")
    expect(page.get_by_text("synthetic-small").first).to_be_visible()
    _dismiss_popups(page)
    page.screenshot(path=str(SHOTS / "datasets.png"))


def _dismiss_popups(page: Any) -> None:
    """First-visit guidance and the assistant side panel (they cover the pages)."""
    page.wait_for_timeout(1500)  # they open a moment after the page renders
    for name in ("Got it", "Close"):
        button = page.get_by_role("button", name=name, exact=True)
        if button.count():
            button.first.click()


@pytest.mark.slow
def test_experiments_open_where_memlab_puts_them(served: Any, page: Any,
                                                 tmp_path: Path) -> None:
    """As a new user (fresh browser profile): MLflow 3.17 opens every experiment on the
    GenAI overview whatever its ``mlflow.experimentKind`` tag; the link memlab prints
    opens a retrieval sweep on the runs table with memlab's saved Pareto chart view, and
    an answered run's experiment on the GenAI overview."""
    from playwright.sync_api import expect

    from memlab.eval.sweep import sweep

    expect.set_options(timeout=WAIT_MS)
    config = {"name": "landing", "dataset": {"name": "synthetic"},
              "tracking": {"experiment": "memlab-ui-landing"},
              "grid": {"retrieval.name": ["bm25", "recency"]}}
    table = sweep(config, out=tmp_path / "runs", progress=False)
    experiment = served.get_experiment_by_name("memlab-ui-landing")
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
    SHOTS.mkdir(parents=True, exist_ok=True)

    # the experiment's plain address: MLflow's redirect picks the GenAI overview
    page.goto(f"{served.tracking_uri}/#/experiments/{experiment.experiment_id}")
    page.wait_for_url(re.compile(r"/overview"))
    assert "workflowType=genai" in page.url
    _dismiss_popups(page)
    page.screenshot(path=str(SHOTS / "landing-default.png"))

    # memlab's link: the runs table, the sweep's parent and children, the Pareto chart
    link = ui_link(table["dir"].iloc[-1], uri=served.tracking_uri)
    assert "/runs?workflowType=machine_learning&viewStateShareKey=memlab-pareto-" in link
    page.goto(link)
    expect(page.get_by_text("landing (sweep)").first).to_be_visible()
    _dismiss_popups(page)
    for child in ("turn / bm25 / retrieval only", "turn / recency(dense) / retrieval only"):
        expect(page.get_by_text(child).first).to_be_visible()
    expect(page.get_by_text("You're viewing a shared view.")).to_be_visible()
    expect(page.get_by_text("memlab: Pareto").first).to_be_visible()  # the chart section
    expect(page.get_by_text(
        "tokens.memory.mean vs. turn.budget_evidence_recall_at_1000").first).to_be_visible()
    page.screenshot(path=str(SHOTS / "landing-memlab.png"))
