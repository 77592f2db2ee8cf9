"""``python -m memlab.eval.log_worker``: the background MLflow logger of a sweep.

Reads pickled jobs ``(run_dir, config, summary, dataset_name, pareto)`` from stdin, one
after another, logs each with :func:`memlab.eval.tracking.log_run` and answers each with
a pickled ``("ok", run_id)`` or ``("error", message)`` on the stdout it started with
(everything the libraries print goes to stderr). It runs as its own ``python -m``
process, so the caller's main module is never re-imported (a script without an
``if __name__ == "__main__"`` guard is safe).
"""

from __future__ import annotations

import os
import pickle
import sys
from pathlib import Path


def main() -> int:
    replies = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    sys.stdout = sys.stderr  # library output must not mix with the replies
    jobs = sys.stdin.buffer
    from memlab.eval.run import RunResult
    from memlab.eval.tracking import log_run

    while True:
        try:
            run_dir, config, summary, dataset, pareto = pickle.load(jobs)
        except EOFError:
            return 0
        try:
            reply = ("ok", log_run(RunResult(Path(run_dir), config, summary), dataset,
                                   pareto=pareto))
        except Exception as exc:  # reported to the sweep, which names the run
            reply = ("error", f"{type(exc).__name__}: {exc}")
        pickle.dump(reply, replies)
        replies.flush()


if __name__ == "__main__":
    raise SystemExit(main())
