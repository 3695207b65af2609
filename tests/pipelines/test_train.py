"""train end to end on real parts: Ray Train DDP with two gloo workers on a local Ray, Ray Data ingest of
featurize's shards, checkpoints on local disk and on a local S3 endpoint, a worker that fails mid-run."""

import io
import json
import os

import numpy as np
import pytest
import torch

from model import FeatureConfig, load_checkpoint, read_checkpoint
from model.crops import window_logits
from pipelines import featurize, storage
from pipelines import train as job
from pipelines.demo import write_demo

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
    rows = [r for r in featurize.read_rows(features).to_pylist() if r["split"] == "test"]
    arr = job.rows_to_arrays(rows, fcfg, net.cfg.classes)
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


def test_failed_worker_is_replaced_and_resumes(features, tmp_path):
    out, marker = str(tmp_path / "runs"), str(tmp_path / "failed-once")
    assert job.main(["--features", features, "--output", out, "--name", "ft", "--epochs", "2",
                     "--crops-per-window", "1", "--max-failures", "1",
                     "--fail-at-epoch", "0", "--fail-marker", marker, *FAST]) == 0
    assert open(marker).read() == "0"                                     # rank 1 did raise after epoch 0
    m = json.load(open(os.path.join(out, "ft", "report", "metrics.json")))
    assert m["starts"] == [0, 1] and m["resumed_from_epoch"] == 1         # resumed, did not start over
    assert [h["epoch"] for h in m["history"]] == [0, 1]


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


# ------------------------------------------------------------------------------------------------
# the pure parts

def _files(n_per_class=10):
    return {f"/d/{s}/{c}/{c}{k}.wav": (c, s) for c in ("music", "speech") for k in range(n_per_class)
            for s in ["train" if k < 7 else "test"]}


def test_splits_are_by_file_and_stratified():
    files = _files()
    roles = job.split_roles(files, val_fraction=0.3, test_fraction=0.25, seed=0)
    assert {u for u, r in roles.items() if r == "test"} == {u for u, (_, s) in files.items() if s == "test"}
    val = [files[u][0] for u, r in roles.items() if r == "val"]
    assert sorted(val) == ["music"] * 2 + ["speech"] * 2
    # no test split: a stratified test part is carved out of the labeled files
    nosplit = {u: (c, None) for u, (c, _) in files.items()}
    roles = job.split_roles(nosplit, 0.2, 0.3, 0)
    assert sorted(files[u][0] for u, r in roles.items() if r == "test") == ["music"] * 3 + ["speech"] * 3
    folds = job.fold_roles(files, 5, 0.2, 0)
    tests = [{u for u, r in f.items() if r == "test"} for f in folds]
    assert set().union(*tests) == set(files) and sum(map(len, tests)) == len(files)
    for f, t in zip(folds, tests):
        assert sorted(files[u][0] for u in t) == ["music"] * 2 + ["speech"] * 2
        assert set(f) == set(files) and any(r == "val" for r in f.values())
