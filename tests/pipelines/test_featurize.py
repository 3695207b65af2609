"""featurize end to end on real parts: local Ray, a local S3 endpoint, a real two-node cluster."""

import json
import os

import numpy as np
import pyarrow.parquet as pq
import pytest
import soundfile as sf
import torch

from model import FeatureConfig, expand, featurize
from pipelines import featurize as job
from pipelines import shards, storage
from pipelines.demo import make_clip, wav_bytes, write_demo
from tests.conftest import submit_job

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
WIN = 5.0  # seconds per window in these tests (the job's default is the seed's 30 s)


def make_tree(root):
    """Good clips plus every kind of bad input; returns {relative path: expected windows or None}."""
    expect = {}

    def put(rel, data, windows):
        p = os.path.join(root, rel)
        os.makedirs(os.path.dirname(p), exist_ok=True)
        with open(p, "wb") as f:
            f.write(data)
        expect[rel] = windows

    for k in range(2):
        put(f"train/music/m{k}.wav", wav_bytes(make_clip("music", 4.0, k)), 1)
        put(f"train/speech/s{k}.wav", wav_bytes(make_clip("speech", 4.0, 10 + k)), 1)
    put("test/music/long70.wav", wav_bytes(make_clip("music", 70.0, 5)), 14)        # 70 s / 5 s windows
    stereo = np.stack([make_clip("speech", 6.0, 7, sr=44100), make_clip("speech", 6.0, 8, sr=44100)], axis=1)
    put("test/speech/stereo44k.flac", wav_bytes(stereo, 44100, fmt="FLAC"), 2)       # 6 s -> 2 windows
    good = wav_bytes(make_clip("music", 3.0, 9))
    put("train/music/corrupt.wav", good[: len(good) // 3], None)                     # truncated
    put("train/speech/empty.wav", b"", None)
    put("train/speech/notaudio.mp3", b"<html>not audio</html>" * 40, None)
    return expect


def run_job(*args) -> int:
    return job.main([*args, "--window-seconds", str(WIN), "--files-per-task", "1"])


def test_local_folder_to_parquet(ray_local, tmp_path):
    audio, out = str(tmp_path / "audio"), str(tmp_path / "features")
    expect = make_tree(audio)
    assert run_job("--input", audio, "--output", out) == 0

    rows = job.read_rows(out)
    good = {k: v for k, v in expect.items() if v is not None}
    assert rows.num_rows == sum(good.values())
    by_uri = {}
    for r in rows.to_pylist():
        by_uri.setdefault(r["uri"], []).append(r)
    assert set(by_uri) == {os.path.join(audio, k) for k in good}
    for rel, n in good.items():
        rs = by_uri[os.path.join(audio, rel)]
        split, label = rel.split("/")[:2]
        assert len(rs) == n and {(r["label"], r["split"]) for r in rs} == {(label, split)}
    long = sorted(by_uri[os.path.join(audio, "test/music/long70.wav")], key=lambda r: r["window_start"])
    assert [r["window_start"] for r in long] == [i * WIN for i in range(14)]
    assert sum(r["window_duration"] for r in long) == pytest.approx(70.0)
    st = by_uri[os.path.join(audio, "test/speech/stereo44k.flac")]
    assert {(r["sample_rate"], r["channels"]) for r in st} == {(44100, 2)}
    # the last window moves back to end at the file's end (full length, as the labeling job cuts it)
    assert sorted(r["window_start"] for r in st) == pytest.approx([0.0, 1.0])
    assert [r["window_duration"] for r in st] == pytest.approx([5.0, 5.0])

    # the errors table lists exactly the bad files, with messages naming them
    errs = pq.read_table(os.path.join(out, "errors.parquet")).to_pylist()
    bad = {os.path.join(audio, k) for k, v in expect.items() if v is None}
    assert {e["uri"] for e in errs} == bad
    assert all(e["uri"] in e["error"] for e in errs)

    # one row's dense tensor equals model/ run directly on that window
    cfg = FeatureConfig.from_dict(json.load(open(os.path.join(out, "feature_config.json"))))
    assert cfg == FeatureConfig(window_seconds=WIN)
    r = long[3]
    x, _ = storage.decode(r["uri"])
    w = x[int(r["window_start"] * 22050):][: cfg.window_samples]
    direct = featurize(w, 22050, cfg)
    assert np.array_equal(shards.index_of(r), direct.numpy())
    assert torch.equal(expand(torch.from_numpy(shards.index_of(r).copy())), expand(direct))
    # every row's index is what the labeling job computes for the same window (pipelines/windows.py): a
    # short file is featurized on its own samples, its index padded with the floor (0) to the full frames
    from pipelines.windows import iter_windows

    for rel in ("test/speech/stereo44k.flac", "train/music/m0.wav"):
        got = sorted(by_uri[os.path.join(audio, rel)], key=lambda r: r["window_start"])
        want = list(iter_windows(os.path.join(audio, rel), cfg))
        assert [r["window_start"] for r in got] == pytest.approx([w.start for w in want])
        for r, w in zip(got, want):
            direct = featurize(w.samples, 22050, cfg).numpy()
            assert np.array_equal(shards.index_of(r)[:, :direct.shape[1]], direct)
            assert (shards.index_of(r)[:, direct.shape[1]:] == 0).all()
    short = by_uri[os.path.join(audio, "train/music/m0.wav")][0]
    assert short["window_duration"] == pytest.approx(4.0) and shards.index_of(short).shape == (128, cfg.n_frames())
    # the shards are plain Parquet with the config in their schema metadata
    shard = next(p for p in (tmp_path / "features" / "shards").rglob("*.parquet"))
    meta = pq.read_schema(shard).metadata
    assert json.loads(meta[b"feature_config"]) == cfg.to_dict()
    marker = json.load(open(os.path.join(out, "_SUCCESS.json")))
    assert marker["files"] == len(good) and marker["errors"] == 3 and marker["windows"] == rows.num_rows

    # a rerun without --overwrite refuses and leaves the output as it was
    before = sorted((p.relative_to(tmp_path), p.stat().st_mtime_ns) for p in (tmp_path / "features").rglob("*"))
    assert run_job("--input", audio, "--output", out) == 2
    after = sorted((p.relative_to(tmp_path), p.stat().st_mtime_ns) for p in (tmp_path / "features").rglob("*"))
    assert before == after

    # --resume featurizes only the new file; --overwrite replaces. A --resume that died before left a shard
    # folder no _SUCCESS.json lists: never read, and cleared by the next run
    orphan = os.path.join(out, "shards", "19700101-000000-dead00")
    os.makedirs(orphan)
    import shutil
    shutil.copy(next(p for p in (tmp_path / "features" / "shards").rglob("*.parquet")), orphan)
    sf.write(os.path.join(audio, "train/music/new.wav"), make_clip("music", 4.0, 99), 22050)
    assert run_job("--input", audio, "--output", out, "--resume") == 0
    rows2 = job.read_rows(out, columns=["uri"]).column("uri").to_pylist()
    assert len(rows2) == rows.num_rows + 1 and rows2.count(os.path.join(audio, "train/music/new.wav")) == 1
    assert not os.path.exists(orphan)
    marker = json.load(open(os.path.join(out, "_SUCCESS.json")))          # totals over both runs
    assert marker["windows"] == len(rows2) and marker["files"] == len(good) + 1
    seconds = 4 * 4.0 + 70.0 + 6.0 + 4.0                                 # the files' durations, new one included
    assert marker["this_run"]["files"] == 1 and marker["audio_hours"] == pytest.approx(seconds / 3600)
    assert {e["uri"] for e in pq.read_table(os.path.join(out, "errors.parquet")).to_pylist()} == bad
    assert run_job("--input", audio, "--output", out, "--overwrite") == 0
    assert job.read_rows(out, columns=["uri"]).num_rows == rows.num_rows + 1


def test_default_spreads_files_over_tasks_one_shard_each(ray_local, tmp_path, capsys):
    """Without --files-per-task, 24 files on the 2-CPU test Ray go 3 per task (4 tasks per CPU), one shard
    per task; a given --files-per-task is kept, and a bad one is refused."""
    audio, out = tmp_path / "audio", str(tmp_path / "features")
    for k in range(24):
        storage.write_bytes(str(audio / "train" / "music" / f"m{k}.wav"), wav_bytes(make_clip("music", 1.0, k)))
    assert job.main(["--input", str(audio), "--output", out, "--window-seconds", "1"]) == 0
    shards = [f for d in job.finished_shards(out)[0] for f in os.listdir(d) if f.endswith(".parquet")]
    assert len(shards) == 8 and job.read_rows(out).num_rows == 24
    assert job.main(["--input", str(audio), "--output", out, "--window-seconds", "1", "--files-per-task", "12",
                     "--overwrite"]) == 0
    assert len([f for d in job.finished_shards(out)[0] for f in os.listdir(d) if f.endswith(".parquet")]) == 2
    with pytest.raises(SystemExit):
        job.main(["--input", str(audio), "--output", out, "--files-per-task", "0"])
    assert "(--files-per-task) must be >= 1" in capsys.readouterr().err


def test_a_bug_in_our_code_fails_the_job_instead_of_an_error_row(ray_local, tmp_path):
    # window_seconds=1e-9 is a valid FeatureConfig whose window is 0 samples: featurize gets empty windows.
    # That is our bug, not a bad file: the job must fail with the traceback, not report every file as bad.
    audio, out = tmp_path / "audio", str(tmp_path / "features")
    audio.mkdir()
    (audio / "a.wav").write_bytes(wav_bytes(make_clip("music", 2.0, 1)))
    (audio / "broken.wav").write_bytes(b"RIFF not really")
    with pytest.raises(Exception, match="ValueError: samples are empty"):
        job.main(["--input", str(audio), "--output", out, "--window-seconds", "1e-9", "--files-per-task", "2"])
    assert not os.path.exists(os.path.join(out, "errors.parquet")) and not os.path.exists(job.marker_uri(out))
    # a broken file is still an error row, from the UDF itself
    import pyarrow as pa

    batch = pa.table({"uri": [str(audio / "broken.wav")], "label": [None], "split": [None], "source": ["audio"]})
    out_tables = list(job.featurize_files(batch, FeatureConfig(window_seconds=WIN).to_dict(), {"variants": 0},
                                          {"noise": [], "music": []}, None, str(tmp_path / "e")))
    assert sum(t.num_rows for t in out_tables) == 0
    errs = storage.read_table(str(tmp_path / "e")).to_pylist()
    assert len(errs) == 1 and "broken.wav" in errs[0]["error"]


def test_bad_locations_exit_nonzero_naming_them(ray_local, tmp_path, capsys):
    assert run_job("--input", str(tmp_path / "missing"), "--output", str(tmp_path / "o")) == 2
    assert str(tmp_path / "missing") in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert run_job("--input", str(tmp_path / "empty"), "--output", str(tmp_path / "o")) == 2
    assert "no audio files" in capsys.readouterr().err
    bad = tmp_path / "bad" / "train" / "music"
    bad.mkdir(parents=True)
    (bad / "x.wav").write_bytes(b"junk")
    assert run_job("--input", str(tmp_path / "bad"), "--output", str(tmp_path / "o2")) == 1
    assert "no file could be featurized" in capsys.readouterr().err
    assert not (tmp_path / "o2" / "_SUCCESS.json").exists()
    write_demo(str(tmp_path / "demo"), per_class=1, seconds=2.0)    # a task no node can run: refused, not a hang
    assert run_job("--input", str(tmp_path / "demo"), "--output", str(tmp_path / "o3"), "--num-cpus", "64") == 2
    assert "--num-cpus 64" in capsys.readouterr().err and not (tmp_path / "o3" / "_SUCCESS.json").exists()


def test_s3_in_and_out(ray_local, bucket, s3_server, capsys):
    s3 = storage.S3Options.from_env()
    for k, kind in enumerate(["music", "speech", "music"]):
        storage.write_bytes(f"s3://{bucket}/in/train/{kind}/c{k}.wav", wav_bytes(make_clip(kind, 4.0, k)), s3)
    storage.write_bytes(f"s3://{bucket}/in/train/music/bad.wav", b"junk", s3)
    out = f"s3://{bucket}/features"
    assert run_job("--input", f"s3://{bucket}/in", "--output", out, "--endpoint-url", s3_server) == 0
    rows = job.read_rows(out, s3)
    assert rows.num_rows == 3 and sorted(rows.column("label").to_pylist()) == ["music", "music", "speech"]
    assert storage.read_table(f"{out}/errors.parquet", s3).column("uri").to_pylist() == [f"s3://{bucket}/in/train/music/bad.wav"]
    assert storage.read_json(f"{out}/feature_config.json", s3)["window_seconds"] == WIN
    # a bucket that does not exist is named in the error
    assert run_job("--input", f"s3://{bucket}/in", "--output", "s3://no-such-bucket-xyz/f") == 2
    assert "no-such-bucket-xyz" in capsys.readouterr().err


@pytest.mark.slow
def test_ray_job_submit_on_two_node_cluster(ray_cluster, tmp_path):
    dashboard, gcs, env = ray_cluster
    audio, out = tmp_path / "audio", tmp_path / "features"
    for k in range(6):
        kind = ["music", "speech"][k % 2]
        p = audio / "train" / kind / f"{kind}{k}.wav"
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(wav_bytes(make_clip(kind, 3.0, k)))
    r = submit_job(dashboard, env, ["python", "pipelines/featurize.py", "--input", str(audio), "--output", str(out),
                                    "--window-seconds", "3", "--files-per-task", "1"])
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "featurize: done: 6 files, 6 windows" in r.stdout
    assert job.read_rows(str(out)).num_rows == 6

    # both nodes ran featurize tasks (Ray's state API, on the cluster's own record)
    from ray.util.state import list_nodes, list_tasks

    nodes = {n.node_id for n in list_nodes(address=gcs)}
    tasks = list_tasks(address=gcs, filters=[("name", "=", "MapBatches(featurize_files)->Write")],
                       detail=True, limit=1000, raise_on_missing_output=False)
    assert len(nodes) == 2
    ran = {t.node_id for t in tasks if t.node_id}
    assert ran == nodes, [(t.name, t.node_id) for t in tasks]


def test_several_inputs_merge_with_sources_and_augmented_copies(ray_local, tmp_path):
    """Two folders and a manifest in one run: every file once, its source kept, nulls stored as nulls
    (not the string "nan"), labeled non-test files with --augment copies, test files as they are."""
    a, b = tmp_path / "gtzan", tmp_path / "corpus"
    write = lambda p, kind, seed: (p.parent.mkdir(parents=True, exist_ok=True),
                                   p.write_bytes(wav_bytes(make_clip(kind, 3.0, seed))))
    write(a / "train" / "music" / "m.wav", "music", 1)
    write(a / "test" / "speech" / "s.wav", "speech", 2)
    write(b / "noise" / "rain.wav", "speech", 3)           # generated noise stand-in: the folder makes the label
    write(b / "archive" / "x.wav", "music", 4)            # no label, no split
    write(b / "clips" / "v.wav", "speech", 5)
    (b / "manifest.csv").write_text("path,label,source,license\nclips/v.wav,speech,voice-actor,CC0\n")
    out = str(tmp_path / "f")
    assert job.main(["--input", str(a), "--input", str(b / "noise"), "--input", str(b / "archive"),
                     "--manifest", str(b / "manifest.csv"), "--output", out, "--window-seconds", "5",
                     "--augment", "2"]) == 0
    rows = job.read_rows(out, columns=["uri", "label", "split", "source", "augment"]).to_pylist()
    by = {}
    for r in rows:
        by.setdefault(os.path.basename(r["uri"]), []).append(r)
    assert set(by) == {"m.wav", "s.wav", "rain.wav", "x.wav", "v.wav"}
    assert {(r["label"], r["split"], r["source"]) for r in by["m.wav"]} == {("music", "train", "gtzan")}
    assert {(r["label"], r["split"], r["source"]) for r in by["x.wav"]} == {(None, None, "archive")}
    assert {(r["label"], r["source"]) for r in by["rain.wav"]} == {("noise", "noise")}
    assert {(r["label"], r["source"]) for r in by["v.wav"]} == {("speech", "voice-actor")}
    # copies: 1 + 2 for labeled files outside the test split, 1 for test and unlabeled files
    assert {k: len(v) for k, v in by.items()} == {"m.wav": 3, "v.wav": 3, "rain.wav": 3, "s.wav": 1, "x.wav": 1}
    for name in ("m.wav", "v.wav", "rain.wav"):
        tags = [r["augment"] for r in by[name]]
        assert tags.count("") == 1 and len(set(tags)) == 3
    t = pq.read_table(os.path.join(out, "shards"))
    assert t.column("split").null_count == sum(r["split"] is None for r in rows) > 0
