"""Shared real parts for the tests: one local Ray per session, a real S3 endpoint on 127.0.0.1 (moto's
server mode), and generated audio. Every process gets the same RAY_AUTH_MODE."""

import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import sys
import time

import pytest

os.environ["RAY_AUTH_MODE"] = "disabled"          # the same for this process, its workers and `ray start`
os.environ.setdefault("RAY_DEDUP_LOGS", "0")
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.dirname(sys.executable)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def ray_local():
    """A local Ray for in-process job runs (jobs call ray.init only when Ray is not up yet)."""
    import ray

    ray.init(address="local", num_cpus=2, object_store_memory=300 * 1024**2, include_dashboard=False,
             log_to_driver=False, runtime_env={"env_vars": {"PYTHONPATH": REPO, "RAY_AUTH_MODE": "disabled"}})
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def s3_server():
    """moto's S3 server on a loopback port; the credentials go into os.environ so that this process and
    every Ray worker (given S3Options or the same environment) reach it. Yields the endpoint URL."""
    port = free_port()
    proc = subprocess.Popen([os.path.join(BIN, "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.1)
    old = {k: os.environ.get(k) for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_ENDPOINT_URL", "AWS_DEFAULT_REGION")}
    os.environ.update(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing", AWS_ENDPOINT_URL=url,
                      AWS_DEFAULT_REGION="us-east-1")
    yield url
    os.killpg(proc.pid, signal.SIGTERM)
    proc.wait(timeout=10)
    for k, v in old.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.fixture
def bucket(s3_server):
    """A fresh bucket on the local S3 endpoint; yields its name."""
    import uuid

    import boto3

    name = "t-" + uuid.uuid4().hex[:12]
    boto3.client("s3", endpoint_url=s3_server).create_bucket(Bucket=name)
    return name


def _stat(pid) -> list[str]:
    """/proc/PID/stat fields after the command name: state, ppid, pgrp, session, ..."""
    return open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()


def cluster_processes(sessions: set[int], temp_dir: str) -> set[int]:
    """PIDs of the processes a test cluster consists of, never anyone else's Ray: those in the sessions of
    its own `ray start` commands (every process they launch inherits the session; Ray's workers only
    take a process group of their own), plus any process whose command line names the cluster's own
    temp dir (gcs_server, raylet, the dashboard and log monitor get it or its session dir) and their
    descendants, in case one left the session."""
    names_it = re.compile(re.escape(temp_dir.encode()) + rb"(/|\x00|$)").search   # not .../raycluster10 for ...1
    procs = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                procs[int(d)] = (int(_stat(d)[3]), bool(names_it(open(f"/proc/{d}/cmdline", "rb").read())))
            except (OSError, IndexError, ValueError):
                continue
    # each `ray start` has exited: a live leader of one of these sessions got its pid reused -> not ours
    ours = {sid for sid in sessions if procs.get(sid, (None,))[0] != sid}
    found = {p for p, (sid, names_tmp) in procs.items() if sid in ours or names_tmp} - {os.getpid()}
    for p in list(found):
        found |= _descendants(p)
    return found - {os.getpid()}


def _descendants(root: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                ppid = int(_stat(d)[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(d))
    out, todo = set(), [root]
    while todo:
        for c in children.get(todo.pop(), []):
            if c not in out:
                out.add(c)
                todo.append(c)
    return out


def _alive(pid: int) -> bool:
    try:
        return _stat(pid)[0] != "Z"
    except OSError:
        return False


def stop_processes(pids: set[int], grace: float = 10.0) -> None:
    """SIGTERM, then SIGKILL what is left. Used instead of `ray stop`, which would also stop every other
    Ray on the machine (this session's in-process one included)."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for p in pids:
            try:
                os.kill(p, sig)
            except ProcessLookupError:
                pass
        deadline = time.time() + grace
        while time.time() < deadline and any(_alive(p) for p in pids):
            time.sleep(0.2)
        if not any(_alive(p) for p in pids):
            return


@pytest.fixture(scope="session")
def ray_cluster():
    """A real two-node Ray cluster on this machine (`ray start --head` + `ray start --address`), for
    `ray job submit`. Yields (dashboard URL, GCS address)."""
    env = dict(os.environ, PATH=BIN + os.pathsep + os.environ.get("PATH", ""), RAY_AUTH_MODE="disabled")
    ray = os.path.join(BIN, "ray")
    port, dash = free_port(), free_port()
    # a short folder: Ray's dashboard sockets live under it and AF_UNIX paths stop at 107 bytes, which
    # /tmp/pytest-of-root/pytest-118/raycluster0/session_<date>_<pid>/sockets/dash_MetricsHead passed
    # (the dashboard's MetricsHead module then died and `ray start --head` failed) once pytest's counter had 3 digits
    tmp = tempfile.mkdtemp(prefix="rc-", dir="/tmp")
    common = ["--num-cpus=2", "--object-store-memory=200000000", "--disable-usage-stats"]
    sessions: set[int] = set()

    def own_ports():  # each node's agents on free ports: the session's other Ray holds the defaults
        return [f"--dashboard-agent-listen-port={free_port()}", f"--dashboard-agent-grpc-port={free_port()}",
                f"--metrics-export-port={free_port()}", f"--runtime-env-agent-port={free_port()}"]

    def ray_start(*args):  # in a session of its own, whose id (its pid) names everything it launches
        p = subprocess.Popen([ray, "start", *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             start_new_session=True)
        sessions.add(p.pid)
        out, err = p.communicate()
        if p.returncode:   # say why: CalledProcessError's message leaves out what `ray start` printed
            raise RuntimeError(f"`ray start {' '.join(args[:2])} ...` exited {p.returncode}:\n"
                               f"{(out + err).decode(errors='replace')[-3000:]}")

    try:
        ray_start("--head", f"--port={port}", *own_ports(), "--dashboard-host=127.0.0.1", f"--dashboard-port={dash}",
                  "--include-dashboard=true", f"--temp-dir={tmp}", *common)
        ray_start(f"--address=127.0.0.1:{port}", *own_ports(), *common)
        yield f"http://127.0.0.1:{dash}", f"127.0.0.1:{port}", env
    finally:
        # listed again after each round: a dying raylet may start a worker after the list was taken (CI at a
        # load average of 31 left two such processes, never signalled, behind one round)
        for _ in range(3):
            pids = {p for p in cluster_processes(sessions, tmp) if _alive(p)}
            if not pids:
                break
            stop_processes(pids)
        left = {p for p in cluster_processes(sessions, tmp) if _alive(p)}
        shutil.rmtree(tmp, ignore_errors=True)
        assert not left, f"the test cluster's processes survived SIGKILL: {sorted(left)}"


def submit_job(dashboard: str, env: dict, entrypoint: list, timeout: float = 600) -> subprocess.CompletedProcess:
    """The literal `ray job submit --address URL --working-dir . -- python ...`, from the repo root.
    Right after `ray start` the head's job agent may not be up yet ("No available agent"): retry that."""
    cmd = [os.path.join(BIN, "ray"), "job", "submit", "--address", dashboard, "--working-dir", ".", "--", *entrypoint]
    deadline = time.time() + 120
    while True:
        r = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
        if r.returncode == 0 or "No available agent" not in r.stdout + r.stderr or time.time() > deadline:
            return r
        time.sleep(3)
