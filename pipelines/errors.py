"""JobError: what a job's API function (pipelines/api.py) raises when it cannot do what it was asked for
reasons of its input, not of the code: a missing or unreadable location, no audio found, a finished output
without resume/overwrite, nothing that could be processed. The message names the bad input; the job's CLI
prints it as `<job>: error: <message>` and exits with exit_code. Bugs keep their own exception types."""

from __future__ import annotations

import sys


class JobError(Exception):
    def __init__(self, message: str, exit_code: int = 2):
        super().__init__(message)
        self.exit_code = exit_code   # 2: bad input or output location; 1: nothing could be processed


def run_cli(job: str, run, cfg) -> int:
    """A job's main(): run(cfg) -> print its summary line, exit 0; a JobError -> `<job>: error: <message>` on
    stderr and its exit code."""
    try:
        result = run(cfg)
    except JobError as e:
        print(f"{job}: error: {e}", file=sys.stderr, flush=True)
        return e.exit_code
    print(result.summary_line(), flush=True)
    return 0
