"""A training run's result (rank 0): the best validation epoch's test figures (metrics.json's content), the
report (metrics, predictions, plots) and model.pt with its configs for the labeling job."""

from __future__ import annotations

import io
import json

import numpy as np
import torch

from model import FeatureConfig
from model.checkpoint import checkpoint_dict
from pipelines import storage
from pipelines.report import classification_metrics, write_report
from pipelines.storage import S3Options
from pipelines.train_config import TrainConfig



def test_report(te: dict, state: dict, stopper, cfg: TrainConfig, world: int, device) -> dict:
    """metrics.json's content but the timings and memory (rank 0)."""
    classes = cfg.classes
    m = classification_metrics(te["probs"], te["label"], classes)
    files = {}  # file level: mean of the window probabilities of each file
    for (u, _), p, lab in zip(te["keys"], te["probs"], te["label"]):
        files.setdefault(u, [[], lab])[0].append(p)
    fp = np.array([np.mean(v[0], 0) for v in files.values()]) if files else np.zeros((0, len(classes)))
    fl = np.array([v[1] for v in files.values()], np.int64)
    hist = state["history"]
    return {
        "test": m, "test_files_accuracy": float((fp.argmax(1) == fl).mean()) if len(fl) else None,
        "best_epoch": stopper.best_epoch, "best_val_loss": stopper.best_val_loss,
        "epochs_run": len(hist), "early_stopped": stopper.stopped and state["epoch"] + 1 < cfg.epochs,
        "starts": state["starts"], "resumed_from_epoch": state["starts"][-1] if len(state["starts"]) > 1 else None,
        "history": hist, "world_size": world, "device": str(device),
        "backend": "nccl" if device.type == "cuda" else "gloo", "classes": list(classes),
        "train_samples_per_s": float(np.mean([h["train_samples_per_s"] for h in hist])) if hist else None,
    }


def write_results(report: dict, te: dict, net, fcfg: FeatureConfig, cfg: TrainConfig, run_uri: str,
                  s3: S3Options | None) -> None:
    """report/ (metrics.json, predictions.json, plots), then model.pt and its configs for the labeling job."""
    classes, m = cfg.classes, report["test"]
    storage.write_json(storage.join(run_uri, "report", "predictions.json"),
                       {"classes": list(classes), "windows": [
                           {"uri": u, "window_start": s, "label": classes[int(lab)], "probs": [float(q) for q in p]}
                           for (u, s), p, lab in zip(te["keys"], te["probs"], te["label"])]}, s3)
    write_report(storage.join(run_uri, "report"), report, report["history"], te["probs"], te["label"], classes, s3)
    buf = io.BytesIO()
    torch.save(checkpoint_dict(net, fcfg, eval_crop_frames=cfg.eval_crop_frames, epoch=report["best_epoch"],
                               metrics=json.dumps({"test_accuracy": m["accuracy"], "roc_auc": m["roc_auc"]}),
                               train_config=json.dumps(cfg.to_dict())), buf)
    storage.write_bytes(storage.join(run_uri, "model.pt"), buf.getvalue(), s3)
    storage.write_json(storage.join(run_uri, "net_config.json"), cfg.net_config().to_dict(), s3)
    storage.write_json(storage.join(run_uri, "feature_config.json"), fcfg.to_dict(), s3)
