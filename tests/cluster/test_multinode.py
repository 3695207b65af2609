"""The three jobs on a real two-node Ray cluster on this machine (`ray start --head` + `ray start
--address`, the ray_cluster fixture), each submitted with the literal `ray job submit --address URL
--working-dir . -- python pipelines/<job>.py ...` and each consuming the previous one's output:
generated audio -> featurize -> train (2 DDP workers) -> label a long file. Small on purpose (short clips
and windows, 2 epochs) so that it takes a few minutes on 2 cores."""

import json
import os

import pyarrow.parquet as pq
import pytest
import soundfile as sf

from tests.cluster.helpers import REPO, parse_job_command
from tests.conftest import submit_job

MISSING = [j for j in ("train", "label") if not os.path.isfile(os.path.join(REPO, "pipelines", f"{j}.py"))]
WIN = 4.0  # seconds per window (the jobs' default is the seed's 30 s)


def submit(ray_cluster, argv, timeout=900):
    parse_job_command(argv)                      # the same flags the job's argparse takes, before a cluster run
    dashboard, _, env = ray_cluster
    r = submit_job(dashboard, env, argv, timeout=timeout)
    log = (r.stdout + r.stderr)[-6000:]
    assert r.returncode == 0, f"{' '.join(argv)} failed:\n{log}"
    assert "succeeded" in r.stdout.lower(), log
    return r.stdout


@pytest.mark.slow
@pytest.mark.skipif(bool(MISSING), reason=f"pipelines/{' and '.join(MISSING or ['-'])}.py not written yet")
def test_featurize_train_label_on_two_nodes(ray_cluster, tmp_path):
    from pipelines.demo import make_long, write_demo

    audio, features, runs, labels = (str(tmp_path / d) for d in ("audio", "features", "runs", "labels"))
    write_demo(audio, per_class=8, seconds=8.0, seed=3)          # 8 s clips, train/ and test/ splits
    long_wav = tmp_path / "archive" / "long.wav"
    long_wav.parent.mkdir()
    x, truth = make_long([("speech", 12.0), ("music", 12.0), ("speech", 8.0)], seed=5)
    sf.write(long_wav, x, 22050)

    out = submit(ray_cluster, ["python", "pipelines/featurize.py", "--input", audio, "--output", features,
                               "--window-seconds", str(WIN), "--files-per-task", "4"])
    done = json.load(open(os.path.join(features, "_SUCCESS.json")))
    assert done["files"] == 16 and done["windows"] == 32 and done["errors"] == 0, out

    # one whole CPU per DDP worker: on two 2-CPU nodes that leaves one CPU on each node for Ray Data's
    # ingest (with fractional workers, 1.5 + 0.5 per node, no 1-CPU read task can be placed anywhere)
    submit(ray_cluster, ["python", "pipelines/train.py", "--features", features, "--output", runs, "--name", "mn",
                         "--num-workers", "2", "--cpus-per-worker", "1", "--epochs", "2", "--min-epochs", "1",
                         "--batch-size", "8", "--crop-seconds", "2", "--crops-per-window", "1"])
    model = os.path.join(runs, "mn", "model.pt")
    assert os.path.getsize(model) > 0
    metrics = json.load(open(os.path.join(runs, "mn", "report", "metrics.json")))
    assert metrics["world_size"] == 2

    submit(ray_cluster, ["python", "pipelines/label.py", "--input", str(long_wav.parent), "--model", model,
                         "--output", labels, "--actors", "1", "--batch-size", "4"])
    assert os.path.exists(os.path.join(labels, "_SUCCESS.json"))
    files = pq.read_table(os.path.join(labels, "files.parquet")).to_pylist()
    assert [f["uri"] for f in files] == [str(long_wav)] and files[0]["status"] == "ok"
    assert files[0]["duration"] == pytest.approx(32.0, abs=0.1)
    segments = pq.read_table(os.path.join(labels, "segments.parquet")).to_pylist()
    assert segments and segments[0]["start"] == 0 and segments[-1]["end"] == pytest.approx(32.0, abs=0.1)
    assert {s["label"] for s in segments} <= {"music", "speech"}
