"""console: what a job prints. Ray's own INFO chatter is off unless --verbose; one progress line per job.

Measured on `python pipelines/quickstart.py` before this module: 180 lines on a terminal, most of them Ray's
(Ray Data execution plans and finish lines from the driver and from every Ray Train worker, empty lines of
progress bars inside the workers, Ray Train's "Reporting training result" and "Checkpoint successfully
created" per epoch, and every worker print() twice: Ray Train copies print() into its logger).
"""

from __future__ import annotations

import contextlib
import logging
import sys
import threading
import time

# For every process of the job, on every node: ray.init's runtime_env reaches all of them (merged with the
# runtime_env of `ray job submit`). Ray Data logs errors only (its INFO lines are the execution plans and
# "execution finished" of each dataset, printed by every worker that iterates one, and each worker warned
# once that progress bars are off); Ray Train leaves print() alone (it copied each line into its logger,
# which printed it a second time).
QUIET_WORKER_ENV = {"RAY_DATA_LOG_LEVEL": "ERROR", "RAY_TRAIN_ENABLE_PRINT_PATCH": "0"}


def add_verbose(p) -> None:
    p.add_argument("--verbose", action="store_true",
                   help="show Ray's own INFO logs and Ray Data's progress bars (off: the job's lines only)")


def add_cluster_options(p) -> None:
    """The options every job shares, last and in this order (the configs' fields end the same way)."""
    p.add_argument("--endpoint-url", help="S3-compatible endpoint (default: $AWS_ENDPOINT_URL)")
    p.add_argument("--address", help="Ray cluster address (default: $RAY_ADDRESS, else a local Ray)")
    add_verbose(p)


def parse_checked(p, argv, config_of):
    """p.parse_args(argv), refused with argparse's usage error when config_of(options) raises ValueError
    (the job's config checks its own values)."""
    a = p.parse_args(argv)
    try:
        config_of(a)
    except ValueError as e:
        p.error(str(e))
    return a


def init_ray(address: str, verbose: bool = False) -> None:
    """ray.init for a job: with verbose=False Ray's INFO lines stay in its log files (/tmp/ray/session_*/logs)."""
    import ray

    env, kw = ({} if verbose else dict(QUIET_WORKER_ENV)), {}
    if address == "local":
        # Ray Train's placement-group cleaner finds "the" cluster through the State API by scanning this
        # machine; with a second Ray on it (tests, another job) it died with "Found multiple active Ray
        # instances" (a 25-line traceback, and no cleanup): point it at this cluster's dashboard.
        kw["dashboard_port"] = _free_port()
        env["RAY_API_SERVER_ADDRESS"] = f"http://127.0.0.1:{kw['dashboard_port']}"
    if verbose:
        ray.init(address=address, runtime_env={"env_vars": env}, **kw)
        return
    ray.init(address=address, logging_level=logging.WARNING, runtime_env={"env_vars": env}, **kw)
    import ray.data  # noqa: F401  (configures the ray.data logger, whose console handler is lowered here)

    for h in logging.getLogger("ray.data").handlers:
        if h.get_name() == "console":   # the driver's Ray Data file log keeps its INFO lines
            h.setLevel(logging.WARNING)


def ensure_ray(address: str | None, verbose: bool = False) -> None:
    """A job's Ray: the one already up in this process (tests, notebooks, quickstart), else `address`, else
    $RAY_ADDRESS, else "local" (a new local Ray: never attach to a cluster someone else started here)."""
    import os

    import ray

    if not ray.is_initialized():
        init_ray(address or os.environ.get("RAY_ADDRESS") or "local", verbose)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def quiet(ds, verbose: bool = False):
    """No progress bars or execution plans for this dataset (and those made from it), set on its own context."""
    if not verbose:
        from ray.util import log_once

        ds.context.enable_progress_bars = False
        ds.context.enable_operator_progress_bars = False
        ds.context.print_on_execution_start = False
        log_once("ray_data_progress_manager_disabled")  # Ray Data's one warning that they are off: we know
    return ds


def clock(s: float) -> str:
    s = int(max(0, s))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


class Progress:
    """One progress line: on a terminal rewritten in place ('\\r'), else (`ray job logs`, a file) a plain
    line every `every` seconds. update() is cheap to call often."""

    def __init__(self, job: str, total: int, every: float = 10.0, stream=None):
        self.job, self.total, self.every = job, total, every
        self.stream = stream or sys.stdout
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.t0 = self.last = time.time()
        self.width = 0
        self.state = (0, 0.0, 0)

    def line(self) -> str:
        done, seconds, errors = self.state
        el = time.time() - self.t0
        eta = clock(el / done * (self.total - done)) if done else "?"
        return (f"{self.job}: {done}/{self.total} files, {seconds / 3600:.3f} h of audio, "
                f"{seconds / max(el, 1e-9):.1f}x realtime, {errors} errors, {clock(el)} elapsed, ETA {eta}")

    def update(self, done: int, seconds: float = 0.0, errors: int = 0) -> None:
        self.state = (done, seconds, errors)
        now = time.time()
        if now - self.last < (0.5 if self.tty else 0.9 * self.every):  # 0.9: a poller every `every` s never skips one
            return
        self.last = now
        self._write()

    def _write(self) -> None:
        text = self.line()
        if self.tty:
            self.stream.write("\r" + text.ljust(self.width))
            self.width = len(text)
        else:
            self.stream.write(text + "\n")
        self.stream.flush()

    def close(self) -> None:
        """End the updating line (on a terminal it stays, with the final counts)."""
        if self.tty:
            self._write()
            self.stream.write("\n")
            self.stream.flush()


@contextlib.contextmanager
def polling(fn, every: float):
    """Call fn() every `every` seconds in a daemon thread while the block runs (for a driver that waits in
    one Ray call, e.g. Dataset.write_parquet). An exception in fn ends the polling, not the job."""
    stop = threading.Event()

    def run():
        while not stop.wait(every):
            try:
                fn()
            except Exception:   # a progress line is never worth a failed job
                return

    t = threading.Thread(target=run, daemon=True)
    t.start()
    try:
        yield
    finally:
        stop.set()
        t.join()


class WrittenFiles:
    """featurize's progress from what its tasks have written so far: the windows in the Parquet shards of
    a run (a file counts at its first window) and the rows of its errors folder. A file whose footer is not
    written yet is read on a later poll."""

    def __init__(self, shards_dir: str, errors_dir: str, s3=None):
        self.dirs, self.s3, self.seen = (shards_dir, errors_dir), s3, set()
        self.files = self.errors = 0
        self.seconds = 0.0

    def poll(self) -> tuple[int, float, int]:
        import pyarrow.compute as pc
        import pyarrow.parquet as pq

        from pipelines import shards, storage

        for d, is_err in zip(self.dirs, (False, True)):
            if not storage.exists(d, self.s3):
                continue
            fs = storage.get_fs(d, self.s3)
            for path in fs.find(storage.strip_scheme(d)):
                if path in self.seen or not path.endswith(".parquet"):
                    continue
                try:
                    with fs.open(path, "rb") as f:
                        t = pq.read_table(f, columns=None if is_err else ["uri", "window_start", "augment",
                                                                          "window_duration"])
                except Exception:
                    continue
                self.seen.add(path)
                if is_err:
                    self.errors += t.num_rows
                    continue
                orig = t.filter(pc.equal(t.column("augment"), ""))
                self.files += int(pc.sum(pc.equal(orig.column("window_start"), 0.0)).as_py() or 0)
                self.seconds += shards.audio_seconds(t)   # a file's last window may overlap the one before
        return self.files + self.errors, self.seconds, self.errors
