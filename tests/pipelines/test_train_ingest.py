"""train's two ingest paths end to end: two gloo workers on a local Ray, generated audio. A budget smaller
than a worker's load makes `--ingest auto` stream the windows through Ray Data every epoch; on the demo
data the streamed run reaches the test accuracy of the in-memory one, and a streamed run resumes."""

import json
import os

import pytest

from pipelines import featurize
from pipelines import train as job
from pipelines.demo import write_demo

WIN = 4.0
FAST = ["--crop-seconds", "2", "--batch-size", "16", "--num-workers", "2", "--min-epochs", "1"]


@pytest.fixture(scope="module")
def features(ray_local, tmp_path_factory):
    """16 generated 8 s clips per class (12 train, 4 test) in 4 s windows, two files per shard file: at
    archive scale a shard file is a small part of the set and of a worker's shuffle buffer, as here."""
    root = tmp_path_factory.mktemp("ingest")
    write_demo(str(root / "audio"), per_class=16, seconds=8.0, seed=0)
    out = str(root / "features")
    assert featurize.main(["--input", str(root / "audio"), "--output", out, "--window-seconds", str(WIN),
                           "--files-per-task", "2"]) == 0
    return out


def _metrics(out: str, name: str) -> dict:
    return json.load(open(os.path.join(out, name, "report", "metrics.json")))


def test_tiny_budget_streams_and_reaches_the_in_memory_accuracy(features, tmp_path, capsys):
    out = str(tmp_path / "runs")
    args = ["--features", features, "--output", out, "--epochs", "3", "--crops-per-window", "3", *FAST]
    assert job.main([*args, "--name", "mem"]) == 0
    assert "ingest memory (auto: " in capsys.readouterr().out
    assert job.main([*args, "--name", "stream", "--memory-budget-mb", "0.5"]) == 0
    printed = capsys.readouterr().out
    assert "ingest stream (auto: " in printed and "budget 0.5 MiB), shuffle buffer" in printed
    mem, stream = _metrics(out, "mem"), _metrics(out, "stream")
    assert mem["ingest"] == "memory" and stream["ingest"] == "stream"
    assert stream["train_config"]["ingest"] == "auto" and stream["train_config"]["ingest_path"] == "stream"
    assert stream["worker_data_mb_estimate"] == mem["worker_data_mb_estimate"] > 0.5
    # the same steps and crops per epoch on both paths, every epoch run, the loss falling
    assert [h["epoch"] for h in stream["history"]] == [0, 1, 2]
    assert stream["train_config"]["steps_per_epoch"] == mem["train_config"]["steps_per_epoch"]
    assert stream["history"][-1]["train_loss"] < stream["history"][0]["train_loss"]
    assert stream["test"]["n"] == mem["test"]["n"] == 16
    assert mem["test"]["accuracy"] >= 0.9 and stream["test"]["accuracy"] == mem["test"]["accuracy"], \
        (mem["test"], stream["test"])


def test_streamed_run_resumes(features, tmp_path):
    out = str(tmp_path / "runs")
    args = ["--features", features, "--output", out, "--crops-per-window", "1", "--ingest", "stream", *FAST]
    assert job.main([*args, "--name", "s", "--epochs", "1"]) == 0
    assert job.main([*args, "--resume", "s", "--epochs", "2"]) == 0
    m = _metrics(out, "s")
    assert m["ingest"] == "stream" and m["starts"] == [0, 1] and [h["epoch"] for h in m["history"]] == [0, 1]
    assert m["test"]["n"] == 16
