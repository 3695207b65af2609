"""Run a job script as it runs from the command line and SIGKILL its own process group at a write point,
from outside the job's code (tests/pipelines/test_crash_resume.py):

    python tests/pipelines/crashpoint.py OUT LOG KILL -- pipelines/label.py --input ... --output OUT

Every write into OUT by this process's main thread is an event, seen through Python's audit hooks: a file
opened for writing (storage.write_bytes' temp file), a rename onto its final name, a file or folder removed
(shutil.rmtree's start and its every unlink and rmdir; an empty folder made on the way is part of the next
event's state). Each event is appended to LOG as one JSON line before it happens, with its absolute path
(rmtree names files relative to an open folder: resolved through /proc/self/fd) and its kind: the event and
the path relative to OUT with what differs between runs generalized (kind() below), e.g.
"os.rename parts/<run>/files/#####.parquet". KILL = "KIND#k" kills the process group at the k-th event of that
kind, before it happens (so the state on disk is the state right after the event before it, and the kill at
a rename leaves the fully written temp file); "-" kills nothing (list the events of an uninterrupted run).
`--shard N` instead kills as soon as the N-th new Parquet file appears under OUT/shards/ (written by Ray
workers, whose C++ writes no audit hook sees), polled every 5 ms from a thread. Every kill is logged with
"killed": true first. The job's own code has no hook of any kind.
"""

import json
import os
import re
import runpy
import signal
import sys
import threading
import time

WATCH = {"open", "os.rename", "os.remove", "os.rmdir", "shutil.rmtree"}
GENERAL = [(re.compile(r"\d{8}-\d{6}-[0-9a-f]{6}"), "<run>"),      # a run's folder (time + uuid)
           (re.compile(r"\d{5}\.parquet"), "#####.parquet"),         # a label part's number
           (re.compile(r"\.tmp-\d+$"), ".tmp-*")]                    # storage.write_bytes' temp (pid)


def kind(event: str, path: str, out: str) -> str:
    """'EVENT RELPATH' with the parts that differ between runs of one command generalized."""
    rel = os.path.relpath(path, out)
    for pattern, repl in GENERAL:
        rel = pattern.sub(repl, rel)
    return f"{event} {rel}"


def resolve(path, dir_fd) -> str:
    """An audit event's path as an absolute path (relative ones are relative to dir_fd, else the cwd)."""
    path = os.fsdecode(path)
    if not os.path.isabs(path) and isinstance(dir_fd, int):
        return os.path.join(os.readlink(f"/proc/self/fd/{dir_fd}"), path)
    return os.path.abspath(path)


def is_write(event: str, args) -> bool:
    if event != "open":
        return True
    mode, flags = args[1], args[2]
    if mode is not None:
        return any(c in mode for c in "wax+")
    return bool(flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT))


def watch_writes(out: str, log: str, kill: str, die) -> None:
    """Log every write into out by the main thread; die(record) at the kill's event."""
    want, _, nth = kill.rpartition("#")
    main_thread, counts, busy = threading.get_ident(), {}, [False]

    def hook(event, args):
        if event not in WATCH or busy[0] or threading.get_ident() != main_thread:
            return
        busy[0] = True                                    # the hook's own readlink and log are no events
        try:
            raw = args[1] if event == "os.rename" else args[0]
            if not isinstance(raw, (str, bytes, os.PathLike)) or not is_write(event, args):
                return
            dir_fd = args[3] if event == "os.rename" else (args[1] if event != "open" else None)
            path = resolve(raw, dir_fd)
            if path != out and not path.startswith(out + os.sep):
                return
            k = kind(event, path, out)
            counts[k] = counts.get(k, 0) + 1
            record = {"n": sum(counts.values()), "event": event, "path": path, "kind": k, "k": counts[k]}
            if k == want and str(counts[k]) == nth:
                die(record)
            with open(log, "a") as f:
                f.write(json.dumps(record) + "\n")
        finally:
            busy[0] = False

    sys.addaudithook(hook)


def watch_shards(out: str, n: int, die) -> None:
    """die() as soon as the n-th Parquet file appears under out/shards/ (those of earlier runs do not count)."""
    def shards() -> set:
        return {os.path.join(d, f) for d, _, names in os.walk(os.path.join(out, "shards"))
                for f in names if f.endswith(".parquet")}

    def poll(before: set) -> None:
        while True:
            new = shards() - before
            if len(new) >= n:
                die({"n": len(new), "event": "shard", "path": sorted(new)[-1], "kind": "shard", "k": n})
            time.sleep(0.005)

    threading.Thread(target=poll, args=(shards(),), daemon=True).start()


def main() -> None:
    argv = sys.argv[1:]
    shard = None
    if argv[0] == "--shard":
        shard, argv = int(argv[1]), argv[2:]
    out, log, kill = os.path.abspath(argv[0]), argv[1], argv[2]
    assert argv[3] == "--", argv
    script, args = argv[4], argv[5:]

    def die(record: dict) -> None:
        with open(log, "a") as f:
            f.write(json.dumps({**record, "killed": True}) + "\n")
        os.killpg(os.getpgrp(), signal.SIGKILL)

    if shard:
        watch_shards(out, shard, die)
    else:
        watch_writes(out, log, kill, die)
    sys.argv = [script, *args]
    runpy.run_path(script, run_name="__main__")


if __name__ == "__main__":
    main()
