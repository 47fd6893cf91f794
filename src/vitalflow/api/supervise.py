"""The parent of every local job: ``python -m vitalflow.api.supervise EXIT_FILE -- COMMAND...``.

It runs ``COMMAND`` (stdout and stderr inherited: the job's log file), passes SIGTERM and SIGINT on
to it (the command's graceful stop), and when it ends writes its exit code to ``EXIT_FILE``
(atomically) and exits with it. The job runs in a session of its own, so it outlives the app;
the exit file tells an app started later how the job ended. Standard library only.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys


def main(argv: list[str]) -> int:
    if len(argv) < 3 or argv[1] != "--":
        print("usage: python -m vitalflow.api.supervise EXIT_FILE -- COMMAND...", file=sys.stderr)
        return 2
    exit_file, command = argv[0], argv[2:]
    child = subprocess.Popen(command)

    def forward(signum, frame):
        try:
            child.send_signal(signum)
        except ProcessLookupError:
            pass

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    code = child.wait()
    partial = f"{exit_file}.tmp"
    with open(partial, "w") as f:
        f.write(str(code))
    os.replace(partial, exit_file)
    return code if code >= 0 else 128 - code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
