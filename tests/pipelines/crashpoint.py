"""Run a job script as it runs from the command line and SIGKILL its own process group at a write point,
from outside the job's code (tests/pipelines/test_crash_resume.py):

    python tests/pipelines/crashpoint.py OUT LOG KILL_AT -- pipelines/label.py --input ... --output OUT

Every write into OUT by this process's main thread is an event, seen through Python's audit hooks: a file
opened for writing (storage.write_bytes' temp file), a rename onto its final name, a file or folder removed
(shutil.rmtree's every unlink and rmdir; an empty folder made on the way is part of the next event's state). Each event is appended to LOG as one JSON line before it
happens. KILL_AT = k > 0 kills the process group at the k-th event, before it happens (so the state on disk
is the state right after event k - 1, and the kill at a rename leaves the fully written temp file); 0 kills
nothing (count the events of an uninterrupted run). `--shard N` instead kills as soon as the N-th new Parquet
file appears under OUT/shards/ (written by Ray workers, whose C++ writes no audit hook sees), polled every
5 ms from a thread. The job's own code has no hook of any kind.
"""

import json
import os
import runpy
import signal
import sys
import threading
import time

WATCH = {"open", "os.rename", "os.remove", "os.rmdir", "shutil.rmtree"}


def main() -> None:
    argv = sys.argv[1:]
    shard = None
    if argv[0] == "--shard":
        shard, argv = int(argv[1]), argv[2:]
    out, log, kill_at = os.path.abspath(argv[0]), argv[1], int(argv[2])
    assert argv[3] == "--", argv
    script, args = argv[4], argv[5:]
    main_thread = threading.get_ident()
    state = {"n": 0, "rmtree": False, "busy": False}

    def under(p) -> bool:
        if not isinstance(p, (str, bytes, os.PathLike)):
            return False
        p = os.path.abspath(os.fsdecode(p))
        return p == out or p.startswith(out + os.sep)

    def die(record: dict) -> None:
        with open(log, "a") as f:
            f.write(json.dumps({**record, "killed": True}) + "\n")
        os.killpg(os.getpgrp(), signal.SIGKILL)

    def hook(event, args):
        if event not in WATCH or state["busy"] or threading.get_ident() != main_thread:
            return
        path = args[1] if event == "os.rename" else args[0]
        relative_in_rmtree = (state["rmtree"] and isinstance(path, (str, bytes)) and not os.path.isabs(path)
                              and event in ("os.remove", "os.rmdir", "open"))
        if isinstance(path, (str, bytes)) and os.path.isabs(path) and not under(path):
            state["rmtree"] = False                       # an rmtree under OUT has ended
        if not (under(path) or relative_in_rmtree):
            return
        if event == "open":
            mode, flags = args[1], args[2]
            if mode is not None and not any(c in mode for c in "wax+"):
                return
            if mode is None and not flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT):
                return
        if event == "shutil.rmtree":
            state["rmtree"] = True
        state["n"] += 1
        record = {"n": state["n"], "event": event, "path": os.fsdecode(path)}
        state["busy"] = True                              # the log's own open is not an event
        try:
            if state["n"] == kill_at:
                die(record)
            with open(log, "a") as f:
                f.write(json.dumps(record) + "\n")
        finally:
            state["busy"] = False

    def shards() -> set:
        return {os.path.join(d, n) for d, _, names in os.walk(os.path.join(out, "shards"))
                for n in names if n.endswith(".parquet")}

    def watch_shards(before: set) -> None:
        while True:
            new = shards() - before
            if len(new) >= shard:
                die({"n": len(new), "event": "shard", "path": sorted(new)[-1]})
            time.sleep(0.005)

    if shard:                                             # shards of earlier runs do not count
        threading.Thread(target=watch_shards, args=(shards(),), daemon=True).start()
    else:
        sys.addaudithook(hook)
    sys.argv = [script, *args]
    runpy.run_path(script, run_name="__main__")


if __name__ == "__main__":
    main()
