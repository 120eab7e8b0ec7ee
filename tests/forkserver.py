"""A fork server for ``tether serve``: import Tether once, then fork one server per request.

The kill -9 test starts a server per kill point, twenty and more per run. Importing
Tether costs seconds of CPU on a loaded two-core machine, which would make that test
minutes long; forked from a process that has imported it already, a server is listening
in well under a second. Each child runs the real CLI entry point (``tether serve ...``)
in its own process, and is killed with a real SIGKILL.

Protocol: one JSON line per request on stdin, ``{"argv": [...], "env": {...}, "log":
path}``; the answer is the child's pid on one line of stdout. Children are reaped here
automatically; the caller tells a dead child by ``os.kill(pid, 0)`` failing.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys


def _child(request: dict[str, object]) -> None:
    """Become ``tether <argv>`` with the given environment; never returns."""
    code: object = 1
    try:
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        null = os.open(os.devnull, os.O_RDONLY)
        log = os.open(str(request["log"]), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        os.dup2(null, 0)
        os.dup2(log, 1)
        os.dup2(log, 2)
        env = request["env"]
        assert isinstance(env, dict)
        os.environ.update({str(k): str(v) for k, v in env.items()})
        argv = request["argv"]
        assert isinstance(argv, list)
        sys.argv = ["tether", *map(str, argv)]
        from tether.cli import main

        main()
        code = 0
    except SystemExit as exit:
        code = exit.code
    finally:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code if isinstance(code, int) else 1)


def serve_forks() -> None:
    # The slow imports, done once for every child.
    import tether.app
    import tether.cli

    del tether

    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # reap children automatically
    print("ready", flush=True)
    for line in sys.stdin:
        request = json.loads(line)
        pid = os.fork()
        if pid == 0:
            _child(request)
        print(pid, flush=True)


if __name__ == "__main__":
    serve_forks()
