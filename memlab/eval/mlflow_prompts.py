"""The templates a run rendered, in MLflow's Prompt Registry, linked to the run.

Each template file becomes prompt ``memlab.<template name>``; a new prompt version is
registered only for a file content MLflow has not seen (matched by the version tag
``memlab.sha256``, the sha256 of the file), so a sweep of 32 configurations over one
template registers it once. The version carries the template's memlab version, purpose,
path and source (where its wording comes from); the run links every version it used
(MLflow's Prompts page then lists the runs, and traces link the versions they rendered).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from typing import Any

#: MLflow's prompt tag listing the experiments whose Prompts page shows the prompt.
EXPERIMENTS_TAG = "_mlflow_experiment_ids"
#: Registered versions already looked up in this process: (uri, prompt, sha256) -> version.
_SEEN: dict[tuple[str, str, str], Any] = {}


def prompt_name(template: str) -> str:
    return f"memlab.{template}"


def template_names(config: dict[str, Any], items: list[dict[str, Any]]) -> list[str]:
    """Templates the run rendered: components of the resolved tree that carry a template
    identity, the judge's template, and those the items name."""
    names = set(_tree_templates(config))
    judge = config.get("judge") or {}
    if judge.get("template"):
        names.add(str(judge["template"]))
    for row in items:
        for record in (row.get("llm"), row.get("judge_record")):
            if isinstance(record, dict) and record.get("template"):
                names.add(str(record["template"]))
    return sorted(names)


def register_templates(client: Any, config: dict[str, Any], items: list[dict[str, Any]],
                       run_id: str, experiment_id: str) -> dict[str, Any]:
    """Register (once per file content) and link to ``run_id`` every template the run
    rendered, and list the prompts on the experiment's Prompts page; returns template
    name -> MLflow PromptVersion."""
    from memlab.prompts import get_template

    versions = {}
    for name in template_names(config, items):
        template = get_template(name, config.get("template_dirs") or [])
        version = _registered(client, template)
        client.link_prompt_version_to_run(run_id, version)
        _attach(client, version.name, experiment_id)
        versions[name] = version
    return versions


def _attach(client: Any, name: str, experiment_id: str) -> None:
    """Add the experiment to the prompt's ``_mlflow_experiment_ids`` tag (``,1,4,``: the
    form MLflow's experiment Prompts page filters on with LIKE '%,<id>,%')."""
    key = (str(client.tracking_uri), name, f"experiment {experiment_id}")
    if key in _SEEN:
        return
    current = (client.get_prompt(name).tags or {}).get(EXPERIMENTS_TAG, "")
    ids = [i for i in current.strip(",").split(",") if i]
    if experiment_id not in ids:
        client.set_prompt_tag(name, EXPERIMENTS_TAG, f",{','.join([*ids, experiment_id])},")
    _SEEN[key] = True


def _registered(client: Any, template: Any) -> Any:
    text = template.path.read_text(encoding="utf-8")
    sha = hashlib.sha256(text.encode("utf-8")).hexdigest()
    name = prompt_name(template.name)
    key = (str(client.tracking_uri), name, sha)
    if key not in _SEEN:
        _SEEN[key] = _find(client, name, sha) or client.register_prompt(
            name=name, template=text,
            commit_message=f"memlab template {template.name} v{template.version}: "
                           f"{template.purpose}",
            tags={"memlab.sha256": sha, "memlab.template_version": str(template.version),
                  "memlab.purpose": template.purpose, "memlab.path": str(template.path),
                  "memlab.source": template.source or "memlab", "memlab.output": template.output})
    return _SEEN[key]


def _find(client: Any, name: str, sha: str) -> Any:
    """The registered version of ``name`` whose file sha256 is ``sha``, if any."""
    from mlflow.exceptions import MlflowException

    try:
        versions = client.search_prompt_versions(name, max_results=1000)
    except MlflowException:  # no such prompt yet
        return None
    for version in versions:
        if (version.tags or {}).get("memlab.sha256") == sha:
            return version
    return None


def _tree_templates(node: Any) -> Iterator[str]:
    """Names of template components (``{name, identity: {path, sha256, ...}}``)."""
    if isinstance(node, dict):
        identity = node.get("identity")
        if isinstance(identity, dict) and str(identity.get("path", "")).endswith(".j2"):
            yield str(node["name"])
        for value in node.values():
            yield from _tree_templates(value)
    elif isinstance(node, list):
        for value in node:
            yield from _tree_templates(value)
