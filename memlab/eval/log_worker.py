"""``python -m memlab.eval.log_worker``: the background MLflow logger of a sweep.

Reads one JSON job per line from stdin, ``{"run_dir": ..., "pareto": ..., "sweep": ...}``,
mirrors that finished run directory with :func:`memlab.eval.tracking.log_run` (as a
child of the sweep's parent run) and answers each with one JSON line ``["ok", run_id]``
or ``["error", message]`` on the stdout it started with (everything the libraries print
goes to stderr). It runs as its own process, so the caller's main module is never
re-imported (a script without an ``if __name__ == "__main__"`` guard is safe); the
caller starts it with ``python -c`` and its own memlab first on the path (a clone in the
working directory is not what the sweep runs), in a session of its own (a Ctrl-C to the
sweep does not cut it off mid-write: it stops at the end of its input).
"""

from __future__ import annotations

import json
import os
import sys


def main() -> int:
    replies = os.fdopen(os.dup(sys.stdout.fileno()), "w", encoding="utf-8")
    sys.stdout = sys.stderr  # library output must not mix with the replies
    from memlab.eval.tracking import log_run

    for line in sys.stdin:
        if not line.strip():
            continue
        try:
            job = json.loads(line)
            reply = ["ok", log_run(job["run_dir"], pareto=bool(job.get("pareto")),
                                   sweep=job.get("sweep"))]
        except Exception as exc:  # reported to the sweep, which names the run
            reply = ["error", f"{type(exc).__name__}: {exc}"]
        replies.write(json.dumps(reply) + "\n")
        replies.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
