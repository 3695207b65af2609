"""Reports: the training run's metrics and plots, and the labeling job's timeline plot (matplotlib, Agg).

Plots are rendered to PNG bytes and written through pipelines/storage.py, so local and s3:// outputs share code.
"""

from __future__ import annotations

import io
import os

import numpy as np
import pyarrow as pa

from model import FeatureConfig
from pipelines import storage
from pipelines.storage import S3Options


# ------------------------------------------------------------------------------------------------
# train: metrics and the run report

def classification_metrics(probs: np.ndarray, labels: np.ndarray, classes: tuple) -> dict:
    """probs (N, C), integer labels (N,) -> accuracy, per-class precision/recall/F1, confusion, ROC AUC."""
    from sklearn.metrics import accuracy_score, confusion_matrix, precision_recall_fscore_support, roc_auc_score

    pred = probs.argmax(1)
    idx = list(range(len(classes)))
    p, r, f, s = precision_recall_fscore_support(labels, pred, labels=idx, zero_division=0)
    m = {"n": int(len(labels)), "accuracy": float(accuracy_score(labels, pred)) if len(labels) else float("nan"),
         "per_class": {c: {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]), "support": int(s[i])}
                       for i, c in enumerate(classes)},
         "confusion_matrix": confusion_matrix(labels, pred, labels=idx).tolist(),
         "confusion_matrix_axes": "rows: true class, columns: predicted class, in `classes` order",
         "classes": list(classes)}
    m["roc_auc"] = None  # undefined unless every class occurs (sklearn would warn and give NaN: not JSON)
    if len(set(np.asarray(labels).tolist())) == len(classes) >= 2:
        if len(classes) == 2:
            m["roc_auc"] = float(roc_auc_score(labels, probs[:, 1]))
        else:
            m["roc_auc"] = float(roc_auc_score(labels, probs, multi_class="ovr"))
    return m


def _png(fig, dpi: int = 110, bbox_inches: str | None = "tight") -> bytes:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches=bbox_inches)
    plt.close(fig)
    return buf.getvalue()


def write_report(report_dir: str, metrics: dict, history: list[dict], probs: np.ndarray, labels: np.ndarray,
                 classes: tuple, s3: S3Options | None = None) -> None:
    """metrics.json plus loss/accuracy curves, confusion matrix and ROC plots (matplotlib, Agg)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import roc_curve

    storage.write_json(storage.join(report_dir, "metrics.json"), metrics, s3)
    ep = [h["epoch"] for h in history]
    for key, title in (("loss", "loss"), ("acc", "accuracy")):
        fig, ax = plt.subplots(figsize=(5, 3.5))
        ax.plot(ep, [h[f"train_{key}"] for h in history], "o-", label="train (augmented crops)")
        ax.plot(ep, [h[f"val_{key}"] for h in history], "s-", label="validation (whole windows)")
        if metrics.get("best_epoch") is not None:
            ax.axvline(metrics["best_epoch"], color="gray", ls=":", label="best epoch")
        ax.set_xlabel("epoch"), ax.set_ylabel(title), ax.legend(), ax.grid(alpha=0.3)
        ax.set_title(title)
        storage.write_bytes(storage.join(report_dir, f"{'loss' if key == 'loss' else 'accuracy'}.png"), _png(fig), s3)
    cm = np.asarray(metrics["test"]["confusion_matrix"])
    fig, ax = plt.subplots(figsize=(4, 3.5))
    ax.imshow(cm, cmap="Blues")
    for i in range(cm.shape[0]):
        for j in range(cm.shape[1]):
            ax.text(j, i, str(cm[i, j]), ha="center", va="center", color="black")
    ax.set_xticks(range(len(classes)), classes), ax.set_yticks(range(len(classes)), classes)
    ax.set_xlabel("predicted"), ax.set_ylabel("true")
    ax.set_title(f"test accuracy {metrics['test']['accuracy']:.3f}")
    storage.write_bytes(storage.join(report_dir, "confusion.png"), _png(fig), s3)
    fig, ax = plt.subplots(figsize=(4, 4))
    if len(set(labels.tolist())) == 2 and probs.shape[1] == 2:
        fpr, tpr, _ = roc_curve(labels, probs[:, 1])
        ax.plot(fpr, tpr, label=f"{classes[1]} vs {classes[0]}, AUC {metrics['test']['roc_auc']:.3f}")
    elif probs.shape[1] > 2:                                    # one curve per class, that class vs the rest
        for i, c in enumerate(classes):
            if 0 < (labels == i).sum() < len(labels):
                fpr, tpr, _ = roc_curve(labels == i, probs[:, i])
                ax.plot(fpr, tpr, label=f"{c} vs rest")
    ax.plot([0, 1], [0, 1], "k:", lw=1)
    ax.set_xlabel("false positive rate"), ax.set_ylabel("true positive rate"), ax.legend(loc="lower right")
    ax.set_title("ROC (test)")
    storage.write_bytes(storage.join(report_dir, "roc.png"), _png(fig), s3)


# ------------------------------------------------------------------------------------------------
# label: one file's waveform, spectrogram and timeline

def plot_file(uri: str, segs: pa.Table, png: str, cfg: FeatureConfig, s3=None, columns: int = 2000) -> None:
    """PNG: waveform envelope, mel spectrogram (streamed, column-pooled to ~`columns` pixels) and the
    music/speech timeline of one labeled file."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import torch

    from model.features import mel_transform

    info = next(storage.iter_decoded_blocks(uri, 1.0, cfg.sample_rate, s3))[2]
    dur = info.duration
    per_col = max(1, int(dur * cfg.sample_rate / columns))
    env_lo, env_hi, spec = [], [], []
    mel = mel_transform(cfg)
    carry = np.zeros(0, np.float32)
    for _, block, _ in storage.iter_decoded_blocks(uri, 30.0, cfg.sample_rate, s3):
        x = np.concatenate([carry, block])
        n = len(x) // per_col * per_col
        carry = x[n:]
        if n == 0:
            continue
        cols = x[:n].reshape(-1, per_col)
        env_lo.append(cols.min(1))
        env_hi.append(cols.max(1))
        with torch.inference_mode():
            m = mel(torch.from_numpy(x[:n].copy())).numpy()             # (n_mels, frames)
        nc = cols.shape[0]                                           # frame j (centred at j*hop) -> its column
        col = np.minimum(np.arange(m.shape[1]) * cfg.hop_length // per_col, nc - 1)
        acc, cnt = np.zeros((m.shape[0], nc)), np.bincount(col, minlength=nc)
        np.add.at(acc.T, col, m.T)
        for j in np.nonzero(cnt == 0)[0]:                            # columns narrower than a hop
            acc[:, j], cnt[j] = acc[:, j - 1] / max(cnt[j - 1], 1) if j else 0.0, 1
        spec.append(acc / np.maximum(cnt, 1))
    lo, hi, S = np.concatenate(env_lo), np.concatenate(env_hi), np.concatenate(spec, 1)
    S = 10 * np.log10(np.maximum(S, 1e-10))
    S = np.maximum(S, S.max() - cfg.top_db)
    t = np.arange(len(lo)) * per_col / cfg.sample_rate
    fig, ax = plt.subplots(3, 1, figsize=(14, 6), sharex=True, gridspec_kw={"height_ratios": [1.2, 2, 0.6]})
    ax[0].fill_between(t, lo, hi, color="0.3", lw=0)
    ax[0].set_ylabel("waveform")
    ax[0].set_title(f"{os.path.basename(uri)}: {dur:.1f} s")
    ax[1].imshow(S, origin="lower", aspect="auto", cmap="magma", extent=(0, t[-1] if len(t) else dur, 0, S.shape[0]))
    ax[1].set_ylabel("mel band")
    colors = {"music": "tab:orange", "speech": "tab:blue", "noise": "tab:green", "silence": "0.85"}
    seen = set()
    for r in segs.to_pylist():
        c = colors.get(r["label"], "tab:gray")
        ax[2].axvspan(r["start"], r["end"], color=c, alpha=0.35 + 0.6 * max(0.0, r["probability"] - 0.5),
                      label=None if r["label"] in seen else r["label"])
        seen.add(r["label"])
    ax[2].set_yticks([])
    ax[2].set_ylabel("label")
    ax[2].set_xlabel("time (s)")
    ax[2].set_xlim(0, dur)
    ax[2].legend(loc="upper right", ncol=4, fontsize=8)
    fig.tight_layout()
    storage.write_bytes(png, _png(fig, dpi=100, bbox_inches=None), s3 if storage.is_s3(png) else None)
