"""pipelines/report.py: the metrics against hand-computed values, the report and timeline PNGs."""

import json
import os

import numpy as np
import pyarrow as pa
import pytest
import soundfile as sf

from model import FeatureConfig
from pipelines.demo import make_long
from pipelines.report import classification_metrics, plot_file, write_report

PNG = b"\x89PNG\r\n\x1a\n"


def test_classification_metrics_by_hand():
    # 5 windows: true music, music, music, speech, speech; one music called speech
    probs = np.array([[0.9, 0.1], [0.8, 0.2], [0.4, 0.6], [0.3, 0.7], [0.1, 0.9]])
    labels = np.array([0, 0, 0, 1, 1])
    m = classification_metrics(probs, labels, ("music", "speech"))
    assert m["n"] == 5 and m["accuracy"] == pytest.approx(0.8)
    assert m["confusion_matrix"] == [[2, 1], [0, 2]]
    assert m["per_class"]["music"] == pytest.approx({"precision": 1.0, "recall": 2 / 3, "f1": 0.8, "support": 3})
    assert m["per_class"]["speech"]["precision"] == pytest.approx(2 / 3)
    # speech scores: every speech window (0.7, 0.9) above every music one except 0.6 < 0.7: AUC = 1
    assert m["roc_auc"] == pytest.approx(1.0)
    probs[2] = [0.05, 0.95]                            # now a music window outranks both speech windows
    assert classification_metrics(probs, labels, ("music", "speech"))["roc_auc"] == pytest.approx(4 / 6)
    assert classification_metrics(probs[:3], labels[:3], ("music", "speech"))["roc_auc"] is None  # one class


def test_write_report_writes_metrics_and_four_plots(tmp_path):
    probs = np.array([[0.9, 0.1], [0.2, 0.8], [0.3, 0.7]])
    labels = np.array([0, 1, 1])
    metrics = {"test": classification_metrics(probs, labels, ("music", "speech")), "best_epoch": 1}
    hist = [{"epoch": e, "train_loss": 1.0 / (e + 1), "val_loss": 1.2 / (e + 1), "train_acc": 0.5 + 0.1 * e,
             "val_acc": 0.5 + 0.1 * e} for e in range(3)]
    write_report(str(tmp_path / "report"), metrics, hist, probs, labels, ("music", "speech"))
    assert json.load(open(tmp_path / "report" / "metrics.json")) == json.loads(json.dumps(metrics))
    for f in ("loss.png", "accuracy.png", "confusion.png", "roc.png"):
        assert (tmp_path / "report" / f).read_bytes()[:8] == PNG, f


def test_plot_file_draws_a_long_file_with_its_segments(tmp_path):
    cfg = FeatureConfig()
    x, truth = make_long([("speech", 20.0), ("music", 25.0)], seed=3)
    wav = str(tmp_path / "long.wav")
    sf.write(wav, x, cfg.sample_rate)
    segs = pa.table({"uri": [wav] * 2, "start": [0.0, 20.0], "end": [20.0, 45.0], "label": ["speech", "music"],
                     "probability": [0.9, 0.8]})
    png = str(tmp_path / "t.png")
    plot_file(wav, segs, png, cfg, columns=500)        # streams the file in 30 s blocks: 2 blocks here
    assert os.path.getsize(png) > 10_000 and open(png, "rb").read(8) == PNG
