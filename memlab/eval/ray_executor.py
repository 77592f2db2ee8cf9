"""Replaying conversations on a Ray cluster (``--executor ray [--address ...]``).

One Ray task per (configuration, conversation shard): the task gets the resolved config,
the shard's conversations and their pending probes (pickled by the driver, so workers
need memlab installed but not the dataset files), replays them exactly as a local run
does and returns the :class:`~memlab.eval.replay.ConversationRun` objects. The driver
writes them into the run directory in dataset order, so ``items.jsonl``, ``memory.jsonl``
and ``metrics.json`` are those of a local run, and ``resume``, ``report``, ``compare`` and
the MLflow mirror (``log_run`` on the finished directory, by the driver) work unchanged.

A task whose worker dies (killed, out of memory, node lost) is retried by Ray
(``retries``, default 3); a task that raises is not (its per-probe errors are already
recorded in its items). A driver that dies loses only unfinished conversations: re-running
into the same ``--out`` resumes. Per-task resources: ``task_cpus``, ``task_gpus`` and
``resources`` (e.g. ``{"llm": 1}`` with ``ray start --resources '{"llm": 4}'`` caps
concurrent calls to a remote LLM host at 4).

Items are those of a local run bit for bit when the worker computes what the local run
computed the same way; one exception: a task with ``task_cpus=1`` gets
``OMP_NUM_THREADS=1`` from Ray, and embeddings computed (not cached) with another torch
thread count differ at ~1e-7, which can reorder near-tied scores.

Workers see the driver's ``MEMLAB_*``, ``OLLAMA_*``, ``HF_*`` and ``MLFLOW_*`` environment
(a Ray ``runtime_env``): ``MEMLAB_CACHE_DIR`` points every worker of a machine at one
cache (SQLite in WAL mode, safe for many processes on one machine; across machines give
each node a local cache dir or a shared file system with working POSIX locks).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import Any

from memlab.data.schema import Conversation, Probe
from memlab.errors import ConfigError, MemlabError
from memlab.eval.config import ExperimentConfig
from memlab.eval.replay import ConversationRun

_FORWARDED = ("MEMLAB_", "OLLAMA_", "HF_", "MLFLOW_", "PYTHONPATH")

Shard = list[tuple[Conversation, list[Probe]]]


class RayExecutor:
    """Connects to (or starts) a Ray cluster and replays conversation shards as tasks."""

    def __init__(self, address: str | None = None, shard_size: int = 1, task_cpus: float = 1.0,
                 task_gpus: float = 0.0, resources: dict[str, float] | None = None,
                 retries: int = 3, num_cpus: int | None = None) -> None:
        self.address = address
        self.shard_size = shard_size
        self.task_cpus = task_cpus
        self.task_gpus = task_gpus
        self.resources = resources
        self.retries = retries
        self.num_cpus = num_cpus
        self._started = False

    def __enter__(self) -> RayExecutor:
        ray = _ray()
        if self.shard_size < 1:
            raise ConfigError(f"ray executor: shard_size must be >= 1, got {self.shard_size}")
        if not ray.is_initialized():
            env = {k: v for k, v in os.environ.items() if k.startswith(_FORWARDED)}
            joining = self.address or os.environ.get("RAY_ADDRESS")
            ray.init(address=self.address, num_cpus=None if joining else self.num_cpus,
                     runtime_env={"env_vars": env}, include_dashboard=False,
                     log_to_driver=False, configure_logging=False)
            self._started = True
        try:
            self._check_fits(ray)
        except ConfigError:
            self.__exit__()
            raise
        return self

    def _check_fits(self, ray: Any) -> None:
        """A ConfigError when no alive node has what one task asks for (Ray would leave
        the tasks pending, the run sitting at 0 % without a word)."""
        wanted = {"CPU": self.task_cpus, "GPU": self.task_gpus, **(self.resources or {})}
        wanted = {name: amount for name, amount in wanted.items() if amount}
        nodes = [node.get("Resources", {}) for node in ray.nodes() if node.get("Alive")]
        if any(all(have.get(name, 0) >= amount for name, amount in wanted.items())
               for have in nodes):
            return
        shown = "; ".join(", ".join(f"{k} {v:g}" for k, v in sorted(have.items())
                                    if not k.startswith(("node:", "memory",
                                                         "object_store_memory")))
                          for have in nodes) or "none"
        raise ConfigError(
            f"ray executor: no node of the cluster has what one task asks for "
            f"({', '.join(f'{k} {v:g}' for k, v in wanted.items())}); its nodes have: "
            f"{shown}. Join a node that has it (e.g. `ray start --address HEAD:6379 "
            f"--resources '{{\"llm\": 2}}'`) or ask for less (--task-cpus, --task-gpus, "
            f"--task-resources)")

    def __exit__(self, *_: Any) -> None:
        if self._started:
            _ray().shutdown()
            self._started = False

    def submit(self, config: ExperimentConfig, todo: Shard) -> list[tuple[Shard, Any]]:
        """Start one task per shard of ``todo``; returns (shard, object ref) pairs."""
        ray = _ray()
        remote = ray.remote(_replay_shard).options(
            num_cpus=self.task_cpus, num_gpus=self.task_gpus, resources=self.resources or {},
            max_retries=self.retries, retry_exceptions=False, name=f"memlab:{config.name}")
        config_ref = ray.put(config)
        shards = [todo[i:i + self.shard_size] for i in range(0, len(todo), self.shard_size)]
        return [(shard, remote.remote(config_ref, shard)) for shard in shards]

    def runs(self, config: ExperimentConfig, todo: Shard,
             on_session: Callable[[], object] | None = None) -> Iterator[ConversationRun]:
        """The finished runs of ``todo`` in its order (tasks run concurrently meanwhile)."""
        ray = _ray()
        for shard, ref in self.submit(config, todo):
            try:
                runs = ray.get(ref)
            except ray.exceptions.RayError as exc:
                names = ", ".join(c.id for c, _ in shard)
                raise MemlabError(f"{config.name}: the Ray task for conversation(s) {names} "
                                  f"failed after {self.retries} retries: {exc}") from exc
            for (conversation, _), run in zip(shard, runs, strict=True):
                if on_session is not None:
                    for _ in conversation.sessions:
                        on_session()
                yield run


def _replay_shard(config: ExperimentConfig, shard: Shard) -> list[ConversationRun]:
    """On a worker: replay the shard's conversations with one answerer (model loaded once)."""
    from memlab.eval.replay import replay_conversation
    from memlab.eval.run import build_answerer
    from memlab.plugins import import_plugins

    import_plugins(config.plugins)  # each node imports the config's own components
    answerer = build_answerer(config)
    return [replay_conversation(config, conversation, probes, answerer)
            for conversation, probes in shard]


def _ray() -> Any:
    try:
        import ray
    except ImportError as exc:
        raise MemlabError("--executor ray needs Ray (pip install -e '.[cluster]')") from exc
    return ray
