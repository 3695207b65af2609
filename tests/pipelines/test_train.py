"""train end to end on real parts: Ray Train DDP with two gloo workers on a local Ray, Ray Data ingest of
featurize's shards, checkpoints on local disk and on a local S3 endpoint, a worker process killed mid-run."""

import io
import json
import os
import signal
import threading
import time

import numpy as np
import pytest
import torch

from model import FeatureConfig, load_checkpoint, read_checkpoint
from model.crops import window_logits
from pipelines import featurize, storage, train_data
from pipelines import train as job
from pipelines.demo import write_demo
from pipelines.train_config import TrainConfig
from tests.conftest import _descendants

WIN = 4.0  # seconds per window (the job's default is the seed's 30 s)
# small crops and few epochs keep the file at a few minutes on 2 cores; the seed's network, unchanged
FAST = ["--crop-seconds", "2", "--batch-size", "16", "--num-workers", "2", "--min-epochs", "1"]


@pytest.fixture(scope="module")
def features(ray_local, tmp_path_factory):
    """16 generated 8 s clips per class (12 train, 4 test), featurized into 4 s windows."""
    root = tmp_path_factory.mktemp("train")
    write_demo(str(root / "audio"), per_class=16, seconds=8.0, seed=0)
    out = str(root / "features")
    assert featurize.main(["--input", str(root / "audio"), "--output", out, "--window-seconds", str(WIN),
                           "--files-per-task", "8"]) == 0
    return out


def test_two_gloo_workers_reach_accuracy_and_export(features, tmp_path, capsys):
    out = str(tmp_path / "runs")
    assert job.main(["--features", features, "--output", out, "--name", "r", "--epochs", "3",
                     "--crops-per-window", "3", *FAST]) == 0
    assert "train: done: test accuracy" in capsys.readouterr().out
    run = os.path.join(out, "r")
    m = json.load(open(os.path.join(run, "report", "metrics.json")))
    assert m["world_size"] == 2 and m["backend"] == "gloo" and m["device"] == "cpu"
    hist = m["history"]
    assert [h["epoch"] for h in hist] == [0, 1, 2]
    assert hist[-1]["train_loss"] < hist[0]["train_loss"]                       # loss falls
    t = m["test"]
    assert t["n"] == 16 and t["accuracy"] >= 0.9, t
    assert set(t["per_class"]) == {"music", "speech"}
    assert all(set(v) == {"precision", "recall", "f1", "support"} for v in t["per_class"].values())
    assert np.asarray(t["confusion_matrix"]).sum() == 16 and t["roc_auc"] >= 0.9
    for f in ("loss.png", "accuracy.png", "confusion.png", "roc.png"):
        assert open(os.path.join(run, "report", f), "rb").read(8) == b"\x89PNG\r\n\x1a\n", f
    # splits are by file: no file in two roles, test is the `test` split
    splits = json.load(open(os.path.join(run, "splits.json")))
    assert not set(splits["train"]) & set(splits["val"]) and not set(splits["train"]) & set(splits["test"])
    assert all("/test/" in u for u in splits["test"]) and len(splits["val"]) == 4

    # the exported model loads with weights_only and reproduces the report's predictions
    raw = torch.load(os.path.join(run, "model.pt"), weights_only=True)
    assert raw["format"] == "music-speech-conv3d/1"
    net, fcfg, ckpt = load_checkpoint(open(os.path.join(run, "model.pt"), "rb"))
    assert fcfg == FeatureConfig(window_seconds=WIN)
    assert json.load(open(os.path.join(run, "feature_config.json"))) == fcfg.to_dict()
    assert json.load(open(os.path.join(run, "net_config.json"))) == net.cfg.to_dict()
    # train_config.json, metrics.json and model.pt carry the same TrainConfig, derived fields resolved
    tc = json.load(open(os.path.join(run, "train_config.json")))
    assert tc == m["train_config"] == json.loads(raw["train_config"])
    cfg = TrainConfig.from_dict(tc)
    assert cfg.epochs == 3 and cfg.classes == ("music", "speech") and cfg.crop_frames == ckpt["eval_crop_frames"]
    assert cfg.windows["test"] == 16 and cfg.steps_per_epoch > 0 and cfg.threads_per_worker >= 1
    rows = [r for r in featurize.read_rows(features).to_pylist() if r["split"] == "test"]
    arr = train_data.rows_to_arrays(rows, fcfg, net.cfg.classes)
    probs = torch.softmax(window_logits(net, arr["index"], arr["real"], ckpt["eval_crop_frames"]), 1).numpy()
    pred = json.load(open(os.path.join(run, "report", "predictions.json")))["windows"]
    assert [(p["uri"], p["window_start"]) for p in pred] == list(zip(arr["uri"], arr["start"]))
    # the same predictions up to float32 reduction order (the workers ran other batch shapes/threads)
    np.testing.assert_allclose(probs, np.array([p["probs"] for p in pred]), atol=1e-3)
    assert (probs.argmax(1) == np.array([p["probs"] for p in pred]).argmax(1)).all()
    assert ((probs.argmax(1) == arr["label"]).mean()) == pytest.approx(t["accuracy"])

    # Ray Train's per-epoch checkpoints are plain data too, and carry the training state
    ck = sorted(d for d in os.listdir(run) if d.startswith("checkpoint_epoch_"))
    assert ck and ck[-1] == "checkpoint_epoch_0002"
    state = read_checkpoint(open(os.path.join(run, ck[-1], "model.pt"), "rb"))
    assert json.loads(state["state"])["epoch"] == 2 and "optimizer" in state and "best_model" in state


def _train_workers() -> set[int]:
    """PIDs of the Ray Train worker processes of this test session's own Ray: the local Ray of `ray_local`
    is a child process tree of pytest, so other Rays on the machine are never touched."""
    pids = set()
    for pid in _descendants(os.getpid()):
        try:
            if open(f"/proc/{pid}/cmdline", "rb").read().startswith(b"ray::RayTrainWorker"):
                pids.add(pid)
        except OSError:
            pass
    return pids


def test_killed_worker_is_replaced_and_resumes(features, tmp_path):
    """SIGKILL one worker process mid-epoch, from outside: Ray Train replaces the worker group and the run
    continues from the last registered checkpoint to the epochs asked for."""
    out, epochs = str(tmp_path / "runs"), 4
    before = _train_workers()
    result = {}

    def run():
        try:
            result["rc"] = job.main(["--features", features, "--output", out, "--name", "kill", "--epochs",
                                     str(epochs), "--crops-per-window", "2", "--max-failures", "1", "--ema-decay", "0.9",
                                     *FAST])
        except BaseException as e:  # noqa: BLE001 - reported by the assertion below
            result["error"] = e

    driver = threading.Thread(target=run, daemon=True)
    driver.start()
    # the controller writes its snapshot once it has registered a checkpoint: resuming from epoch 0 is then
    # certain (a checkpoint folder alone may not be registered yet when the worker dies)
    snapshot = os.path.join(out, "kill", "checkpoint_manager_snapshot.json")
    deadline = time.time() + 900
    while driver.is_alive() and time.time() < deadline:
        if os.path.exists(snapshot) and "checkpoint_epoch_0000" in open(snapshot).read():
            break
        time.sleep(0.2)
    assert driver.is_alive(), f"the run ended before a worker was killed: {result}"
    workers = _train_workers() - before
    assert len(workers) == 2, workers                                     # --num-workers 2, this run's
    victim = min(workers)
    os.kill(victim, signal.SIGKILL)
    driver.join(timeout=1200)
    assert not driver.is_alive() and result.get("rc") == 0, result
    assert victim not in _train_workers()
    m = json.load(open(os.path.join(out, "kill", "report", "metrics.json")))
    # the second start continued after a checkpoint, before the last epoch had run
    assert len(m["starts"]) == 2 and m["starts"][0] == 0 and 1 <= m["starts"][1] < epochs, m["starts"]
    assert m["resumed_from_epoch"] == m["starts"][1]
    assert [h["epoch"] for h in m["history"]] == list(range(epochs))   # every epoch once, none repeated
    assert m["epochs_run"] == epochs and m["test"]["n"] == 16
    # the weight average went on from the checkpoint: one update per step of every epoch, none repeated, and
    # model.pt holds the best epoch's average
    last = read_checkpoint(open(os.path.join(out, "kill", f"checkpoint_epoch_{epochs - 1:04d}", "model.pt"), "rb"))
    steps = m["train_config"]["steps_per_epoch"]
    assert json.loads(last["state"])["ema_updates"] == epochs * steps and set(last["ema"]) == set(last["model"])
    final = read_checkpoint(open(os.path.join(out, "kill", "model.pt"), "rb"))["model"]
    assert all(torch.equal(final[k], last["best_model"][k]) for k in final)
    if m["best_epoch"] == epochs - 1:
        assert all(torch.equal(final[k], last["ema"][k]) for k in final)


def test_checkpoints_on_s3_and_resume(features, bucket, s3_server):
    s3 = storage.S3Options.from_env()
    out = f"s3://{bucket}/runs"
    args = ["--features", features, "--output", out, "--crops-per-window", "1", "--endpoint-url", s3_server, *FAST]
    assert job.main([*args, "--name", "s", "--epochs", "1"]) == 0
    fs = storage.get_fs(out, s3)
    files = {p.split(f"{bucket}/runs/s/", 1)[1] for p in fs.find(f"{bucket}/runs/s")}
    assert {"model.pt", "report/metrics.json", "report/roc.png", "checkpoint_epoch_0000/model.pt"} <= files
    ck = read_checkpoint(io.BytesIO(storage.read_bytes(f"{out}/s/checkpoint_epoch_0000/model.pt", s3)))
    assert json.loads(ck["state"])["epoch"] == 0
    # a run name that exists is refused; --resume continues it from its S3 checkpoint
    assert job.main([*args, "--name", "s", "--epochs", "2"]) == 2
    assert job.main([*args, "--resume", "s", "--epochs", "2", "--ema-decay", "0.9"]) == 2   # not the run's
    assert job.main([*args, "--resume", "s", "--epochs", "2", "--channels", "48,96,192"]) == 2   # not the run's
    assert job.main([*args, "--resume", "s", "--epochs", "2", "--pooling", "stats"]) == 2             # not the run's
    assert job.main([*args, "--resume", "s", "--epochs", "2"]) == 0
    m = storage.read_json(f"{out}/s/report/metrics.json", s3)
    assert m["starts"] == [0, 1] and [h["epoch"] for h in m["history"]] == [0, 1]


def test_bad_input_exits_2_naming_it(features, tmp_path, capsys):
    assert job.main(["--features", str(tmp_path / "nope"), "--output", str(tmp_path / "o")]) == 2
    assert str(tmp_path / "nope") in capsys.readouterr().err
    assert job.main(["--features", features, "--output", str(tmp_path / "o"), "--resume", "missing"]) == 2
    assert "missing" in capsys.readouterr().err
    assert job.main(["--features", features, "--output", str(tmp_path / "o"), "--folds", "20"]) == 2
    assert "--folds 20" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        job.parse_args(["--folds", "1"])
