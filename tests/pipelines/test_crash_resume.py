"""A crash at every write point, then the same command again: the output equals an uninterrupted run's.

Each job runs as `python pipelines/<job>.py ...`, the way users run it, under tests/pipelines/crashpoint.py,
which SIGKILLs the job's process group at the k-th write into the output folder (Python audit hooks, from
outside the job's code) or when the n-th feature shard appears (written by Ray workers). The output already
holds a finished run over some files, and the killed command is a `--resume` that adds more: the crash
lands between the previous run's tables and the new one's. The drivers attach to the session's local Ray
(RAY_ADDRESS), so no kill point pays for a Ray start-up; killing a driver ends its Ray job, as on a cluster.
"""

import json
import os
import shutil
import signal
import subprocess
import sys

import pyarrow.parquet as pq
import pytest

from pipelines.demo import make_clip, wav_bytes

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CRASH = os.path.join(REPO, "tests", "pipelines", "crashpoint.py")


@pytest.fixture(scope="module")
def env(ray_local):
    """The drivers' environment: the session's Ray, reached by address."""
    return dict(os.environ, RAY_ADDRESS=ray_local.get_runtime_context().gcs_address, RAY_AUTH_MODE="disabled")


def run(env, job: str, args: list[str], out: str, log: str, kill_at: int = 0, shard: int = 0) -> int:
    """`python pipelines/<job>.py args` under crashpoint.py, in a process group of its own; -> exit status."""
    crash = [CRASH, *(["--shard", str(shard)] if shard else []), out, log, str(kill_at), "--"]
    p = subprocess.run([sys.executable, *crash, os.path.join("pipelines", f"{job}.py"), *args], cwd=REPO, env=env,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
                       timeout=600)
    if kill_at == 0 and shard == 0:
        assert p.returncode == 0, p.stdout[-4000:]
    return p.returncode


def events(log: str) -> list[dict]:
    with open(log) as f:
        return [json.loads(x) for x in f]


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


def crash_points(log: str) -> list[dict]:
    """The write points of an uninterrupted run: every rename onto a final name (the kill leaves its temp
    file fully written: the state right after the previous write, plus that file), every removal of a file
    and the start of every folder removal (an emptied folder's own removal changes nothing a reader sees)."""
    return [e for e in events(log) if e["event"] in ("os.rename", "os.remove", "shutil.rmtree")]


def rel(e: dict, out: str) -> tuple[str, str]:
    """(event, path relative to out): rmtree's unlinks name files relative to their folder already."""
    return e["event"], os.path.relpath(e["path"], out) if os.path.isabs(e["path"]) else e["path"]


# ------------------------------------------------------------------------------------------------
# label

def label_state(out: str) -> dict:
    files = pq.read_table(os.path.join(out, "files.parquet")).to_pylist()
    segs = pq.read_table(os.path.join(out, "segments.parquet")).to_pylist()
    with open(os.path.join(out, "_SUCCESS.json")) as f:
        marker = json.load(f)
    return {"names": sorted(os.listdir(out)), "files": files, "segments": segs,
            "marker": {k: v for k, v in marker.items() if k != "this_run"}}


def same_labels(got: dict, want: dict) -> None:
    assert got["names"] == want["names"]
    assert {**got["marker"], "audio_hours": 0} == {**want["marker"], "audio_hours": 0}
    assert got["marker"]["audio_hours"] == pytest.approx(want["marker"]["audio_hours"])
    assert [(r["uri"], r["status"], r["label"], r["windows"]) for r in got["files"]] == \
        [(r["uri"], r["status"], r["label"], r["windows"]) for r in want["files"]]
    assert [(r["uri"], r["start"], r["end"], r["label"]) for r in got["segments"]] == \
        [(r["uri"], r["start"], r["end"], r["label"]) for r in want["segments"]]
    assert [r["probability"] for r in got["segments"]] == pytest.approx([r["probability"] for r in want["segments"]],
                                                                          abs=1e-4)


def test_label_crash_at_every_write_point_then_resume(env, trained, tmp_path):
    model = trained[0]
    audio = str(tmp_path / "audio")
    first = write_clips(audio, {"a/m0.wav": ("music", 4.0, 1), "a/s0.wav": ("speech", 3.0, 2)})
    later = write_clips(audio, {"b/m1.wav": ("music", 5.0, 3), "b/s1.wav": ("speech", 4.0, 4),
                                "b/bad.wav": ("corrupt", 3.0, 5)})
    common = ["--model", model, "--actors", "1", "--batch-size", "4"]
    cmd = ["--input", audio, *common, "--resume"]
    base, log = str(tmp_path / "base"), str(tmp_path / "base.log")
    run(env, "label", ["--input", os.path.join(audio, "a"), *common, "--output", base], base, log)
    ref, ref_log = str(tmp_path / "ref"), str(tmp_path / "ref.log")
    shutil.copytree(base, ref)
    run(env, "label", [*cmd, "--output", ref], ref, ref_log)
    want = label_state(ref)
    assert [r["uri"] for r in want["files"]] == sorted(first + later)
    assert [r["status"] for r in want["files"]].count("error") == 1
    # Kill at the n-th event of the uninterrupted run's sequence, for every write point in it. A run writes
    # a part every 64 files or 30 s, so on a slow machine a killed run's sequence can hold one part more or
    # less than the reference's (a run whose sequence ends before n is not killed: its output must be right
    # all the same): what each kill hit is collected, and every kind of write point must be hit.
    hit = []
    for e in crash_points(ref_log):
        out, log = str(tmp_path / f"k{e['n']}"), str(tmp_path / f"k{e['n']}.log")
        shutil.copytree(base, out)
        rc = run(env, "label", [*cmd, "--output", out], out, log, kill_at=e["n"])
        assert rc == (-signal.SIGKILL if events(log)[-1].get("killed") else 0), (e, rc)
        if rc:
            hit.append(rel(events(log)[-1], out))
            run(env, "label", [*cmd, "--output", out], out, str(tmp_path / f"r{e['n']}.log"))
        no_temp_files(out)
        same_labels(label_state(out), want)
    # the label config, a part's segments and files, the two tables, the parts removed (files first), the marker
    for name in ("label_config.json", "files.parquet", "segments.parquet", "_SUCCESS.json"):
        assert ("os.rename", name) in hit, hit
    for folder in ("segments", "files"):
        assert any(k == "os.rename" and p.startswith("parts/") and f"/{folder}/" in p for k, p in hit), hit
        assert any(k == "shutil.rmtree" and p.startswith("parts") for k, p in hit), hit
    assert sum(k == "os.remove" for k, _ in hit) >= 2, hit


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
    return {"names": sorted(os.listdir(out)), "runs": len(runs),
            "shard_dirs": sorted(os.listdir(os.path.join(out, "shards"))) == sorted(runs),
            "rows": sorted(rows, key=lambda r: (r["uri"], r["augment"], r["window_start"])),
            "errors": sorted(errors, key=lambda r: r["uri"]), "marker": marker}


def test_featurize_crash_at_every_write_point_then_resume(env, tmp_path):
    audio = str(tmp_path / "audio")
    write_clips(audio, {"a/train/music/m0.wav": ("music", 3.0, 1), "a/train/speech/s0.wav": ("speech", 3.0, 2)})
    write_clips(audio, {"b/train/music/m1.wav": ("music", 3.0, 3), "b/test/speech/s1.wav": ("speech", 5.0, 4),
                        "b/train/music/m2.wav": ("music", 2.0, 5), "b/train/speech/bad.wav": ("corrupt", 3.0, 6)})
    common = ["--window-seconds", "2", "--files-per-task", "1"]
    cmd = ["--input", os.path.join(audio, "a"), "--input", os.path.join(audio, "b"), *common, "--resume"]
    base, log = str(tmp_path / "base"), str(tmp_path / "base.log")
    run(env, "featurize", ["--input", os.path.join(audio, "a"), *common, "--output", base], base, log)
    ref, ref_log = str(tmp_path / "ref"), str(tmp_path / "ref.log")
    shutil.copytree(base, ref)
    run(env, "featurize", [*cmd, "--output", ref], ref, ref_log)
    want = feature_state(ref)
    assert want["shard_dirs"] and want["runs"] == 2 and want["marker"]["files"] == 5
    assert [os.path.basename(r["uri"]) for r in want["errors"]] == ["bad.wav"]
    n_shards = len(os.listdir(os.path.join(ref, "shards", sorted(os.listdir(os.path.join(ref, "shards")))[-1])))
    assert n_shards == 3
    # each shard as it appears (Ray workers write them), then every write of the driver
    points = [{"shard": n} for n in range(1, n_shards + 1)] + crash_points(ref_log)
    hit = []
    for i, e in enumerate(points):
        out, log = str(tmp_path / f"k{i}"), str(tmp_path / f"k{i}.log")
        shutil.copytree(base, out)
        rc = run(env, "featurize", [*cmd, "--output", out], out, log, kill_at=e.get("n", 0), shard=e.get("shard", 0))
        assert rc == -signal.SIGKILL and events(log)[-1].get("killed"), (e, rc)   # its writes are the same each run
        hit.append(rel(events(log)[-1], out))
        run(env, "featurize", [*cmd, "--output", out], out, str(tmp_path / f"r{i}.log"))
        no_temp_files(out)
        assert feature_state(out) == want, e
    assert sum(k == "shard" for k, _ in hit) == n_shards, hit
    for name in ("errors.parquet", "feature_config.json", "_SUCCESS.json"):
        assert ("os.rename", name) in hit, hit
