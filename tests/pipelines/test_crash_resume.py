"""A crash at every write point, then the same command again: the output equals an uninterrupted run's.

Each job runs as `python pipelines/<job>.py ...`, the way users run it, under tests/pipelines/crashpoint.py,
which SIGKILLs the job's process group at a write into the output folder (Python audit hooks, from outside
the job's code) or when the n-th feature shard appears (written by Ray workers). The output already holds a
finished run over some files, and the killed command is a `--resume` that adds more: the crash lands between
the previous run's tables and the new one's. The write points are those of one uninterrupted run of that
command, the reference every killed-and-resumed output must equal (same files, rows, segments, errors;
nothing twice, nothing missing, no temp file left): one kill per distinct state it leaves on disk, and of
repeated writes of one kind (a part, a shard) the first and the last. The drivers attach to the session's
local Ray (RAY_ADDRESS), so no kill point pays for a Ray start-up; killing a driver ends its Ray job, as on
a cluster. Each run is one decode process and (label) one network actor, since every driver is a new Ray job
whose worker processes start anew: measured beside other work, a label run took 9-19 s with --decode-cpus 1
against 17-111 s with its default 0.5 (two decode processes), a featurize run 11-48 s with --num-cpus 2
against 14-61 s with 1. Kept small for CI (2 cores, pytest's 900 s): 8 label points (18 runs) and 5
featurize points (12 runs) took 191 s and 195 s beside other work (load 5-14), where the first version
(10 and 6 points, two decode processes, 3 shards) took 450 s and 319 s back to back with them.
"""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import pyarrow.parquet as pq
import pytest

from pipelines.demo import make_clip, wav_bytes

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CRASH = os.path.join(REPO, "tests", "pipelines", "crashpoint.py")
RUN_TIMEOUT = 120     # s per driver run (9-53 s measured beside other work): a hang fails here, not at pytest's 900
KILL_EVENTS = ("os.rename", "os.remove", "shutil.rmtree")


@pytest.fixture(scope="module")
def env(ray_local):
    """The drivers' environment: the session's Ray, reached by address, once its 2 CPUs are free (a run
    needs both: a reservation left over by another test would stall it until RUN_TIMEOUT)."""
    deadline = time.time() + 60
    while ray_local.available_resources().get("CPU", 0) < 2 and time.time() < deadline:
        time.sleep(0.5)
    assert ray_local.available_resources().get("CPU", 0) >= 2, ray_local.available_resources()
    return dict(os.environ, RAY_ADDRESS=ray_local.get_runtime_context().gcs_address, RAY_AUTH_MODE="disabled")


def run(env, job: str, args: list[str], out: str, log: str, kill: str = "-") -> tuple[int, str]:
    """`python pipelines/<job>.py args` under crashpoint.py (kill: "-", "KIND#k" or "shard#n"), in a process
    group of its own; -> (exit status, output). A run without a kill must succeed."""
    shard = ["--shard", kill.split("#")[1]] if kill.startswith("shard#") else []
    cmd = [sys.executable, CRASH, *shard, out, log, "-" if shard else kill, "--", f"pipelines/{job}.py", *args]
    t0 = time.time()
    p = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                         start_new_session=True)
    try:
        text = p.communicate(timeout=RUN_TIMEOUT)[0]
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        import ray

        pytest.fail(f"{job} (kill at {kill}) ran over {RUN_TIMEOUT} s: {' '.join(args)}\nRay's free resources: "
                    f"{ray.available_resources()}\n{p.communicate()[0][-3000:]}")
    print(f"{job} -> {os.path.basename(out)} (kill at {kill}): exit {p.returncode} after {time.time() - t0:.1f} s")
    if kill == "-":
        assert p.returncode == 0, text[-4000:]
    return p.returncode, text


def events(log: str) -> list[dict]:
    if not os.path.exists(log):
        return []
    with open(log) as f:
        return [json.loads(x) for x in f]


def tree(out: str) -> list[str]:
    """Every file under out, with the names that differ between runs (run folders, Ray's shard and error
    part names) generalized: equal trees hold the same files, none twice, none left over."""
    paths = []
    for d, _, names in os.walk(out):
        rel = re.sub(r"\d{8}-\d{6}-[0-9a-f]{6}", "<run>", os.path.relpath(d, out))
        paths += [os.path.join(rel, "*.parquet" if "<run>" in rel else n) for n in names]
    return sorted(paths)


def no_temp_files(out: str) -> None:
    left = [os.path.join(d, n) for d, _, names in os.walk(out) for n in names if ".tmp-" in n]
    assert not left, left


def write_clips(root: str, clips: dict) -> list[str]:
    paths = []
    for rel, (kind, seconds, seed) in clips.items():
        p = os.path.join(root, rel)
        os.makedirs(os.path.dirname(p), exist_ok=True)
        data = wav_bytes(make_clip("music" if kind == "corrupt" else kind, seconds, seed))
        with open(p, "wb") as f:
            f.write(data if kind != "corrupt" else data[: len(data) // 3])      # a truncated WAV: an error row
        paths.append(p)
    return paths


def crash_points(log: str) -> list[str]:
    """The kill points ("KIND#k") of an uninterrupted run's writes: every rename onto a final name (the kill
    leaves its temp file fully written: the state right after the previous write, plus that file), every
    removal of a file and the start of every folder removal (an emptied folder's own removal changes
    nothing a reader sees). A kill at an rmtree's start leaves the same state as one at its first removal:
    the later one is kept. Of the points of one kind, the first and the last."""
    changes, by_state = 0, {}
    for e in events(log):
        if e["event"] in KILL_EVENTS:
            by_state[changes] = e                      # a later point with the same state on disk replaces it
        changes += e["event"] != "shutil.rmtree"
    of_kind: dict[str, list] = {}
    for e in by_state.values():
        of_kind.setdefault(e["kind"], []).append(e)
    keep = {id(es[0]) for es in of_kind.values()} | {id(es[-1]) for es in of_kind.values()}
    return [f"{e['kind']}#{e['k']}" for e in by_state.values() if id(e) in keep]


def reference(env, job: str, first: list[str], cmd: list[str], tmp_path) -> tuple[str, str, str]:
    """base: the finished output of `first`; ref: a copy of it that `cmd` (a --resume) ran into uninterrupted.
    -> (base, ref, ref's event log)."""
    base, ref, log = str(tmp_path / "base"), str(tmp_path / "ref"), str(tmp_path / "ref.log")
    run(env, job, [*first, "--output", base], base, str(tmp_path / "base.log"))
    shutil.copytree(base, ref)
    run(env, job, [*cmd, "--output", ref], ref, log)
    return base, ref, log


def crash_each(env, job: str, cmd: list[str], base: str, ref: str, points: list[str], tmp_path, check,
               may_miss=lambda point: False) -> list[str]:
    """For each point: a copy of base, cmd killed there, cmd again, then the output checked against ref's.
    The kill must happen (the run died by SIGKILL at that point), except where may_miss(point) allows a run
    that wrote fewer writes of that kind. -> the points killed at."""
    hit = []
    for i, point in enumerate(points):
        out, log = str(tmp_path / f"k{i}"), str(tmp_path / f"k{i}.log")
        shutil.copytree(base, out)
        rc, text = run(env, job, [*cmd, "--output", out], out, log, kill=point)
        last = (events(log) or [{}])[-1]
        killed = rc == -signal.SIGKILL and last.get("killed") and f"{last['kind']}#{last['k']}" == point
        assert killed or (rc == 0 and may_miss(point)), (point, rc, last, text[-3000:])
        if killed:
            hit.append(point)
            run(env, job, [*cmd, "--output", out], out, str(tmp_path / f"r{i}.log"))
        no_temp_files(out)
        assert tree(out) == tree(ref), point
        check(out, point)
    return hit


# ------------------------------------------------------------------------------------------------
# label

def label_state(out: str) -> dict:
    files = pq.read_table(os.path.join(out, "files.parquet")).to_pylist()
    segs = pq.read_table(os.path.join(out, "segments.parquet")).to_pylist()
    with open(os.path.join(out, "_SUCCESS.json")) as f:
        marker = json.load(f)
    return {"files": files, "segments": segs, "marker": {k: v for k, v in marker.items() if k != "this_run"}}


def same_labels(got: dict, want: dict) -> None:
    assert {**got["marker"], "audio_hours": 0} == {**want["marker"], "audio_hours": 0}
    assert got["marker"]["audio_hours"] == pytest.approx(want["marker"]["audio_hours"])
    assert [(r["uri"], r["status"], r["label"], r["windows"]) for r in got["files"]] == \
        [(r["uri"], r["status"], r["label"], r["windows"]) for r in want["files"]]
    assert [(r["uri"], r["start"], r["end"], r["label"]) for r in got["segments"]] == \
        [(r["uri"], r["start"], r["end"], r["label"]) for r in want["segments"]]
    assert [r["probability"] for r in got["segments"]] == pytest.approx([r["probability"] for r in want["segments"]],
                                                                          abs=1e-4)


def test_label_crash_at_every_write_point_then_resume(env, trained, tmp_path):
    audio = str(tmp_path / "audio")
    first = write_clips(audio, {"a/m0.wav": ("music", 4.0, 1), "a/s0.wav": ("speech", 3.0, 2)})
    later = write_clips(audio, {"b/m1.wav": ("music", 5.0, 3), "b/s1.wav": ("speech", 4.0, 4),
                                "b/bad.wav": ("corrupt", 3.0, 5)})
    common = ["--model", trained[0], "--actors", "1", "--batch-size", "4", "--decode-cpus", "1"]
    cmd = ["--input", audio, *common, "--resume"]
    base, ref, ref_log = reference(env, "label", ["--input", os.path.join(audio, "a"), *common], cmd, tmp_path)
    want = label_state(ref)
    assert [r["uri"] for r in want["files"]] == sorted(first + later)
    assert [r["status"] for r in want["files"]].count("error") == 1
    points = crash_points(ref_log)
    # A run writes a part every 64 files or 30 s, so on a slow machine a run can write one part more or
    # fewer than the reference: a later write of a part's kind may then not come (its output must be right
    # all the same); the first of every kind always comes.
    hit = crash_each(env, "label", cmd, base, ref, points, tmp_path, lambda out, p: same_labels(label_state(out), want),
                     may_miss=lambda point: not point.endswith("#1"))
    # the label config, a part's segments and files, the two tables, the parts removed (files first), the marker
    for kind in ("os.rename label_config.json", "os.rename parts/<run>/segments/#####.parquet",
                 "os.rename parts/<run>/files/#####.parquet", "os.rename files.parquet", "os.rename segments.parquet",
                 "os.remove parts/<run>/files/#####.parquet", "os.remove parts/<run>/segments/#####.parquet",
                 "os.rename _SUCCESS.json"):
        assert f"{kind}#1" in hit, (kind, points)


# ------------------------------------------------------------------------------------------------
# featurize

def feature_state(out: str) -> dict:
    from pipelines import shards

    rows = shards.read_rows(out).to_pylist()
    with open(os.path.join(out, "_SUCCESS.json")) as f:
        marker = json.load(f)
    runs = marker.pop("runs")
    marker.pop("this_run")
    errors = pq.read_table(os.path.join(out, "errors.parquet")).to_pylist()
    return {"runs": len(runs), "shard_dirs": sorted(os.listdir(os.path.join(out, "shards"))) == sorted(runs),
            "rows": sorted(rows, key=lambda r: (r["uri"], r["augment"], r["window_start"])),
            "errors": sorted(errors, key=lambda r: r["uri"]), "marker": marker}


def test_featurize_crash_at_every_write_point_then_resume(env, tmp_path):
    audio = str(tmp_path / "audio")
    write_clips(audio, {"a/train/music/m0.wav": ("music", 3.0, 1), "a/train/speech/s0.wav": ("speech", 3.0, 2)})
    write_clips(audio, {"b/train/music/m1.wav": ("music", 3.0, 3), "b/test/speech/s1.wav": ("speech", 5.0, 4),
                        "b/train/speech/bad.wav": ("corrupt", 3.0, 6)})
    common = ["--window-seconds", "2", "--files-per-task", "1", "--num-cpus", "2"]
    cmd = ["--input", os.path.join(audio, "a"), "--input", os.path.join(audio, "b"), *common, "--resume"]
    base, ref, ref_log = reference(env, "featurize", ["--input", os.path.join(audio, "a"), *common], cmd, tmp_path)
    want = feature_state(ref)
    assert want["shard_dirs"] and want["runs"] == 2 and want["marker"]["files"] == 4
    assert len({(r["uri"], r["window_start"]) for r in want["rows"]}) == len(want["rows"]) == want["marker"]["windows"]
    assert [os.path.basename(r["uri"]) for r in want["errors"]] == ["bad.wav"]
    n_shards = len(os.listdir(os.path.join(ref, "shards", sorted(os.listdir(os.path.join(ref, "shards")))[-1])))
    assert n_shards == 2                                # one per decodable file (--files-per-task 1)
    # the first and the last shard as it appears (Ray workers write them), then every write of the driver
    points = ["shard#1", f"shard#{n_shards}", *crash_points(ref_log)]

    def check(out, point):
        assert feature_state(out) == want, point

    hit = crash_each(env, "featurize", cmd, base, ref, points, tmp_path, check)
    for name in ("errors.parquet", "feature_config.json", "_SUCCESS.json"):
        assert f"os.rename {name}#1" in hit, (name, points)
