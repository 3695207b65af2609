"""train: Ray Train DDP of the seed's Conv3D network on featurize's Parquet shards, to a real accuracy.

Ray Train's TorchTrainer runs DDP over --num-workers workers (NCCL on GPUs, gloo on CPUs). Each worker
reads its shard of the training windows through Ray Data once (uint8 magma indices, ~165 kB per 30 s
window), keeps them in memory, and trains on random time crops of them, expanding the index to the
dense (4, 10, n_mels, frames) tensor on its own device.

    # the demo features written by `python pipelines/featurize.py`, on a local Ray
    python pipelines/train.py --features demo_out/features --output demo_out/train
    # real data: train on `train`, report on `test`; then 5-fold cross-validation over all labeled files
    python pipelines/train.py --features FEATURES --output runs
    python pipelines/train.py --features FEATURES --output runs --folds 5
    # on a cluster, features and checkpoints on S3, 4 GPU workers
    ray job submit --address http://HEAD:8265 --working-dir . -- \\
        python pipelines/train.py --features s3://bucket/features --output s3://bucket/train \\
            --num-workers 4 --use-gpu
    # continue a run that stopped (its checkpoints are under OUT/NAME)
    python pipelines/train.py --features FEATURES --output runs --resume NAME

What it does against what sank the seed (50% test accuracy, one class predicted):
  * splits are leakage-free by FILE: all windows of one file stay in one of train / val / test (or one CV
    fold); validation is a stratified part of `train` (or the `val` split when the features have one);
  * class-balanced cross-entropy, AdamW with weight decay, linear warm-up then cosine learning rate,
    early stopping on validation loss (the best epoch's weights are the result);
  * augmentation that keeps labels true: random time crops of --crop-seconds from the real (unpadded)
    audio of each window - the network is fully convolutional with global pooling - plus time and
    frequency masking. Masking works on the uint8 index before expand(): a masked pixel gets index 0,
    the bottom of the colormap, which is exactly what the representation makes of the 80 dB floor
    (silence): it becomes magma's darkest entry in luminance layer 0 (alpha 1), as silent audio would.
    Setting the dense tensor to zeros instead would make pixels no real input can produce;
  * evaluation averages the logits of the crops of a window, in one forward pass of the whole window
    (Conv3DNet.local_logits: the feature map is pooled per crop-length stretch), over the stretches that
    hold real audio;
  * bf16 autocast and channels_last_3d on CUDA.

Output (local folder or s3:// prefix), one run per name (a new name per run unless --resume NAME):
    OUT/NAME/checkpoint_*/model.pt    Ray Train checkpoints, every epoch, written by rank 0 alone (weights,
                                      both configs, optimizer, epoch, history, the best weights so far)
    OUT/NAME/model.pt                 the trained model (best validation epoch) for the labeling job:
                                      model/checkpoint.py format, torch.load(weights_only=True)
    OUT/NAME/net_config.json, feature_config.json, train_config.json
    OUT/NAME/report/metrics.json      accuracy, per-class precision/recall/F1, confusion matrix, ROC AUC,
                                      per-epoch history, throughput, peak memory
    OUT/NAME/report/predictions.json  per test window: uri, window_start, label, probabilities
    OUT/NAME/report/{loss,accuracy,confusion,roc}.png
    with --folds K: OUT/NAME/fold-k/... per fold and OUT/NAME/cv.json (mean +- std)

Checkpoints are plain data (model/checkpoint.py): they load with torch.load(weights_only=True).
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import math
import os
import sys
import tempfile
import time
import uuid
import zlib

if __package__ in (None, ""):  # `python pipelines/train.py`: make the repository root importable
    _ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    sys.path.insert(0, _ROOT)
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [_ROOT, os.environ.get("PYTHONPATH")]))

import numpy as np  # noqa: E402
import pyarrow as pa  # noqa: E402
import pyarrow.compute as pc  # noqa: E402
import torch  # noqa: E402

from model import Conv3DNet, FeatureConfig, NetConfig, expand  # noqa: E402
from model.checkpoint import checkpoint_dict, read_checkpoint  # noqa: E402
from model.crops import mask_, random_crops, real_frames, window_logits  # noqa: E402
from pipelines import console, shards, storage  # noqa: E402
from pipelines.splits import fold_roles, split_roles, stratified_pick  # noqa: E402,F401
from pipelines.report import classification_metrics, write_report  # noqa: E402
from pipelines.storage import S3Options  # noqa: E402

ROW_COLUMNS = ["uri", "augment", "window_start", "window_duration", "label", "n_mels", "n_frames", "index"]
CANONICAL = ("music", "speech", "noise")  # class order when --classes is not given


# ------------------------------------------------------------------------------------------------
# splits: by file, stratified by label (pipelines/splits.py); by source with --group-by source

def file_table(features: str, s3: S3Options | None = None) -> tuple[dict, dict, dict]:
    """Of a finished featurize output (plain pyarrow): ({uri: (label, split)} of the labeled files,
    {uri: source}, {uri: rows of the file and its augmented copies})."""
    try:
        t = shards.read_rows(features, s3, ["uri", "label", "split", "source", "augment"]).to_pylist()
    except (KeyError, ValueError, pa.ArrowInvalid) as e:
        raise ValueError(f"{features} was written by an older featurize (no source/augment columns): "
                         f"featurize it again ({e})") from e
    files, sources, windows = {}, {}, {}
    for r in t:
        windows[r["uri"]] = windows.get(r["uri"], 0) + 1       # every row: the file and its augmented copies
        sources[r["uri"]] = r.get("source") or ""
        if r.get("label") is not None:
            files[r["uri"]] = (r["label"], r.get("split"))
    return files, sources, windows


# ------------------------------------------------------------------------------------------------
# the worker

def _key(r: dict) -> str:
    """A window's file key: the file, or the file + its augmented copy ("uri#1:band8000")."""
    return f"{r['uri']}#{r['augment']}" if r.get("augment") else r["uri"]


def _hash_rank(r: dict, world: int) -> int:
    return zlib.crc32(f"{_key(r)}\0{r['window_start']:.6f}".encode()) % world


def load_rows(it, cfg: FeatureConfig, classes: tuple, keep=None) -> dict:
    """Drain a Ray Data iterator of shard rows into memory: uint8 index (N, n_mels, n_frames), labels,
    real frames and keys, sorted by (uri, window_start). keep(row) filters rows."""
    rows = []
    for b in it.iter_batches(batch_size=64, batch_format="pyarrow"):
        for r in b.to_pylist():
            if keep is None or keep(r):
                rows.append(r)
    return rows_to_arrays(rows, cfg, classes)


def rows_to_arrays(rows: list[dict], cfg: FeatureConfig, classes: tuple) -> dict:
    rows = sorted(rows, key=lambda r: (_key(r), r["window_start"]))
    if rows:
        index = np.stack([shards.index_of(r) for r in rows])
    else:
        index = np.zeros((0, cfg.n_mels, cfg.n_frames()), np.uint8)
    return {"index": index,
            "label": np.array([classes.index(r["label"]) for r in rows], np.int64),
            "real": np.array([real_frames(r["window_duration"], cfg) for r in rows], np.int64),
            "uri": [_key(r) for r in rows], "start": [float(r["window_start"]) for r in rows]}


def _gather(obj, world: int) -> list:
    import torch.distributed as dist

    if world == 1 or not (dist.is_available() and dist.is_initialized()):
        return [obj]
    out = [None] * world
    dist.all_gather_object(out, obj)
    return out


def _sync_buffers(net, world: int) -> None:
    import torch.distributed as dist

    if world > 1 and dist.is_available() and dist.is_initialized():
        for b in net.buffers():
            dist.broadcast(b, 0)


def _evaluate(net, data: dict, c: dict, device, world: int) -> dict:
    """Every rank evaluates its part, all ranks get all: probs (N, C), labels, keys, in key order."""
    logits = window_logits(net, data["index"], data["real"], c["eval_crop_frames"], c["n_bins"], device,
                           c["eval_batch_size"])
    part = {"logits": logits.numpy(), "label": data["label"], "uri": data["uri"], "start": data["start"]}
    parts = _gather(part, world)
    keys = [(u, s) for p in parts for u, s in zip(p["uri"], p["start"])]
    order = sorted(range(len(keys)), key=lambda i: keys[i])
    lg = np.concatenate([p["logits"] for p in parts])[order] if keys else np.zeros((0, 2), np.float32)
    lab = np.concatenate([p["label"] for p in parts])[order] if keys else np.zeros(0, np.int64)
    lgt = torch.from_numpy(lg).float()
    loss = float(torch.nn.functional.cross_entropy(lgt, torch.from_numpy(lab))) if len(lab) else float("nan")
    probs = torch.softmax(lgt, 1).numpy()
    acc = float((probs.argmax(1) == lab).mean()) if len(lab) else float("nan")
    return {"probs": probs, "label": lab, "keys": [keys[i] for i in order], "loss": loss, "acc": acc}


def _lr(c: dict, epoch_pos: float) -> float:
    """Linear warm-up over warmup_epochs, then cosine from lr to lr * 0.01 at the last epoch."""
    if epoch_pos < c["warmup_epochs"]:
        return c["lr"] * (epoch_pos + 1e-3) / max(c["warmup_epochs"], 1e-3)
    t = (epoch_pos - c["warmup_epochs"]) / max(1e-9, c["epochs"] - c["warmup_epochs"])
    return c["lr"] * (0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * min(1.0, t))))


def _peak_memory_mb(device) -> float:
    import resource

    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux
    if device.type == "cuda":
        return max(rss, torch.cuda.max_memory_allocated(device) / 2**20)
    return rss


def train_loop(c: dict) -> dict:
    """Ray Train's per-worker function (rank 0 alone writes files; every rank reports every epoch)."""
    import ray.train
    import ray.train.torch

    if not c["verbose"]:  # Ray Train logs "Reporting training result" per rank and epoch through the root logger
        logging.getLogger().setLevel(logging.WARNING)   # (its logger is named after a file path), at INFO
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    device = ray.train.torch.get_device()
    cuda = device.type == "cuda"
    if not cuda:
        torch.set_num_threads(c["threads"])
    s3 = c["s3"]
    fcfg, ncfg = FeatureConfig.from_dict(c["feature_config"]), NetConfig.from_dict(c["net_config"])
    classes = tuple(ncfg.classes)
    t_start = time.time()

    # data: once per worker, through Ray Data (train split between workers; val/test rows by hash)
    train = load_rows(ray.train.get_dataset_shard("train"), fcfg, classes)
    ev = []  # val and test rows come in one dataset (one Ray Data execution per worker), by hash
    for b in ray.train.get_dataset_shard("eval").iter_batches(batch_size=64, batch_format="pyarrow"):
        ev += [r for r in b.to_pylist() if _hash_rank(r, world) == rank]
    val = rows_to_arrays([r for r in ev if r["role"] == "val"], fcfg, classes)
    test = rows_to_arrays([r for r in ev if r["role"] == "test"], fcfg, classes)
    del ev
    if len(train["label"]) == 0:
        raise RuntimeError(f"rank {rank} got no training windows")
    load_s = time.time() - t_start

    torch.manual_seed(c["seed"])
    net = Conv3DNet(ncfg)
    for m in net.modules():  # running statistics that keep up with few, small steps (see --bn-momentum)
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.momentum = c["bn_momentum"]
    opt_params = None
    state = {"epoch": -1, "history": [], "best_val_loss": float("inf"), "best_epoch": None, "bad_epochs": 0,
             "stopped": False, "starts": []}
    best_model = None
    ckpt = ray.train.get_checkpoint()
    if ckpt is not None:  # a replaced worker group or --resume: continue after the last checkpoint
        with ckpt.as_directory() as d:
            with open(os.path.join(d, "model.pt"), "rb") as f:
                saved = read_checkpoint(f)
        net.load_state_dict(saved["model"])
        opt_params = saved["optimizer"]
        state = json.loads(saved["state"])
        best_model = saved["best_model"]
    start_epoch = state["epoch"] + 1
    state["starts"].append(start_epoch)

    net = net.to(device)
    if cuda:
        net = net.to(memory_format=torch.channels_last_3d)
    model = ray.train.torch.prepare_model(net, parallel_strategy_kwargs={"find_unused_parameters": False}) \
        if world > 1 else net
    opt = torch.optim.AdamW(net.parameters(), lr=c["lr"], weight_decay=c["weight_decay"])
    if opt_params is not None:
        opt.load_state_dict(opt_params)
    loss_fn = torch.nn.CrossEntropyLoss(weight=torch.tensor(c["class_weights"], dtype=torch.float32, device=device),
                                        label_smoothing=c["label_smoothing"])
    rng = np.random.default_rng([c["seed"], rank, start_epoch])
    local_batch = max(1, c["batch_size"] // world)
    n_local = len(train["label"])
    steps = c["steps_per_epoch"]

    def save(tmpdir, extra_state):
        path = os.path.join(tmpdir, "model.pt")
        with open(path, "wb") as f:
            torch.save(checkpoint_dict(net, fcfg, optimizer=opt.state_dict(), state=json.dumps(extra_state),
                                       best_model=best_model, train_config=json.dumps(c["public"])), f)
        return ray.train.Checkpoint.from_directory(tmpdir)

    epoch = start_epoch
    while epoch < c["epochs"] and not state["stopped"]:
        model.train()
        t0 = time.time()
        perm, pos = rng.permutation(n_local), 0
        tot_loss, tot_ok, tot_n = 0.0, 0, 0
        for step in range(steps):
            if pos + local_batch > n_local:
                perm, pos = np.concatenate([perm[pos:], rng.permutation(n_local)]), 0
            idx = perm[pos:pos + local_batch]
            pos += local_batch
            x = random_crops(train["index"][idx], train["real"][idx], c["crop_frames"], rng)
            mask_(x, rng, c["time_masks"], c["time_mask_fraction"], c["freq_masks"], c["freq_mask_mels"])
            y = torch.from_numpy(train["label"][idx]).to(device)
            for g in opt.param_groups:
                g["lr"] = _lr(c, epoch + step / steps)
            dense = expand(torch.from_numpy(x).to(device), fcfg.n_bins)
            if cuda:
                dense = dense.to(memory_format=torch.channels_last_3d)
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=cuda):
                logits = model(dense)
            loss = loss_fn(logits.float(), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            tot_loss += float(loss.detach()) * len(idx)
            tot_ok += int((logits.argmax(1) == y).sum())
            tot_n += len(idx)
        train_s = time.time() - t0
        agg = _gather((tot_loss, tot_ok, tot_n), world)
        n_all = sum(a[2] for a in agg)
        _sync_buffers(net, world)  # BatchNorm statistics: rank 0's everywhere (DDP re-broadcasts only at forward)
        net.eval()
        v = _evaluate(net, val, c, device, world)
        rec = {"epoch": epoch, "train_loss": sum(a[0] for a in agg) / n_all, "train_acc": sum(a[1] for a in agg) / n_all,
               "val_loss": v["loss"], "val_acc": v["acc"], "lr": _lr(c, epoch + 1), "train_seconds": train_s,
               "train_samples_per_s": n_all / train_s, "epoch_seconds": time.time() - t0}
        state["history"].append(rec)
        if v["loss"] < state["best_val_loss"] - 1e-4 or best_model is None or not math.isfinite(v["loss"]):
            state.update(best_val_loss=v["loss"], best_epoch=epoch, bad_epochs=0)
            best_model = {k: t.detach().cpu().clone() for k, t in net.state_dict().items()}
        else:
            state["bad_epochs"] += 1
        if epoch + 1 >= c["min_epochs"] and state["bad_epochs"] >= c["patience"]:
            state["stopped"] = True
        state["epoch"] = epoch
        metrics = {k: rec[k] for k in ("epoch", "train_loss", "train_acc", "val_loss", "val_acc")}
        if rank == 0:
            left = (time.time() - t_start - load_s) / (epoch + 1 - start_epoch) * (c["epochs"] - epoch - 1)
            print(f"train: epoch {epoch} of 0-{c['epochs'] - 1} (ETA {console.clock(left)} at most): train loss "
                  f"{rec['train_loss']:.4f} acc {rec['train_acc']:.3f}, val loss "
                  f"{rec['val_loss']:.4f} acc {rec['val_acc']:.3f}, {rec['train_samples_per_s']:.1f} crops/s, "
                  f"{rec['epoch_seconds']:.0f} s{' (best)' if state['best_epoch'] == epoch else ''}", flush=True)
        with tempfile.TemporaryDirectory() as tmp:
            ray.train.report(metrics, checkpoint=save(tmp, state) if rank == 0 else None,
                             checkpoint_dir_name=f"checkpoint_epoch_{epoch:04d}")
        if c.get("fail_at_epoch") == epoch and rank == world - 1 and not os.path.exists(c["fail_marker"]):
            with open(c["fail_marker"], "w") as f:  # test-only: fail once, after this epoch's checkpoint
                f.write(str(epoch))
            raise RuntimeError(f"injected failure on rank {rank} after epoch {epoch} (test only)")
        epoch += 1

    # the result: the best validation epoch's weights on the test windows
    net.load_state_dict(best_model)
    net.eval()
    t0 = time.time()
    te = _evaluate(net, test, c, device, world)
    test_s = time.time() - t0
    peaks = _gather(_peak_memory_mb(device), world)
    out = None
    if rank == 0:
        m = classification_metrics(te["probs"], te["label"], classes)
        # file level: mean of the window probabilities of each file
        files = {}
        for (u, _), p, lab in zip(te["keys"], te["probs"], te["label"]):
            files.setdefault(u, [[], lab])[0].append(p)
        fp = np.array([np.mean(v[0], 0) for v in files.values()]) if files else np.zeros((0, len(classes)))
        fl = np.array([v[1] for v in files.values()], np.int64)
        hist = state["history"]
        report = {
            "test": m, "test_files_accuracy": float((fp.argmax(1) == fl).mean()) if len(fl) else None,
            "best_epoch": state["best_epoch"], "best_val_loss": state["best_val_loss"],
            "epochs_run": len(hist), "early_stopped": state["stopped"] and state["epoch"] + 1 < c["epochs"],
            "starts": state["starts"], "resumed_from_epoch": state["starts"][-1] if len(state["starts"]) > 1 else None,
            "history": hist, "world_size": world, "device": str(device),
            "backend": "nccl" if cuda else "gloo", "classes": list(classes),
            "train_samples_per_s": float(np.mean([h["train_samples_per_s"] for h in hist])) if hist else None,
            "peak_memory_mb_per_worker": max(peaks), "data_load_seconds": load_s, "test_eval_seconds": test_s,
            "test_windows_per_s": len(te["label"]) / test_s if test_s else None,
            "train_config": c["public"], "run": c["run_uri"],
        }
        storage.write_json(storage.join(c["run_uri"], "report", "predictions.json"),
                           {"classes": list(classes), "windows": [
                               {"uri": u, "window_start": s, "label": classes[int(lab)], "probs": [float(q) for q in p]}
                               for (u, s), p, lab in zip(te["keys"], te["probs"], te["label"])]}, s3)
        write_report(storage.join(c["run_uri"], "report"), report, hist, te["probs"], te["label"], classes, s3)
        # the export for the labeling job
        buf = io.BytesIO()
        torch.save(checkpoint_dict(net, fcfg, eval_crop_frames=c["eval_crop_frames"], epoch=state["best_epoch"],
                                   metrics=json.dumps({"test_accuracy": m["accuracy"], "roc_auc": m["roc_auc"]}),
                                   train_config=json.dumps(c["public"])), buf)
        storage.write_bytes(storage.join(c["run_uri"], "model.pt"), buf.getvalue(), s3)
        storage.write_json(storage.join(c["run_uri"], "net_config.json"), ncfg.to_dict(), s3)
        storage.write_json(storage.join(c["run_uri"], "feature_config.json"), fcfg.to_dict(), s3)
        out = {k: v for k, v in report.items() if k not in ("history",)}
    ray.train.report({"epoch": state["epoch"], "done": True,
                      "test_accuracy": out["test"]["accuracy"] if out else None})
    return out


# ------------------------------------------------------------------------------------------------
# the driver

def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="Train the seed's Conv3D music/speech network with Ray Train DDP on featurize's output.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--features", default="demo_out/features",
                   help="a finished featurize output (folder or s3:// prefix with _SUCCESS.json)")
    p.add_argument("--output", default="demo_out/train",
                   help="folder or s3:// prefix; each run writes OUT/NAME/ (checkpoints, model.pt, report/)")
    p.add_argument("--name", help="run name (default: a new time-stamped name); must not exist yet")
    p.add_argument("--resume", metavar="NAME", help="continue run NAME from its last checkpoint")
    p.add_argument("--num-workers", type=int, default=2, help="DDP workers (Ray Train actors)")
    p.add_argument("--use-gpu", action="store_true", help="one GPU per worker, NCCL, bf16 autocast, channels-last")
    p.add_argument("--cpus-per-worker", type=float,
                   help="CPUs each worker reserves (default: whole CPUs from what is left after one for Ray "
                        "Data, at most 4 each; 0.5 on a 2-core machine)")
    p.add_argument("--threads-per-worker", type=int,
                   help="torch threads per CPU worker (default: the cluster's CPUs / workers; data is loaded "
                        "once before training, so compute may use all cores)")
    p.add_argument("--batch-size", type=int, default=16, help="global batch size (split across the workers)")
    p.add_argument("--epochs", type=int, default=40, help="maximum epochs")
    p.add_argument("--min-epochs", type=int, default=8, help="no early stop before this many epochs")
    p.add_argument("--patience", type=int, default=8, help="early stopping: epochs without a better validation loss")
    p.add_argument("--lr", type=float, default=1e-3, help="peak learning rate (AdamW)")
    p.add_argument("--weight-decay", type=float, default=0.05, help="AdamW weight decay")
    p.add_argument("--warmup-epochs", type=float, default=1.0, help="linear warm-up, then cosine decay")
    p.add_argument("--label-smoothing", type=float, default=0.05, help="cross-entropy label smoothing")
    p.add_argument("--crop-seconds", type=float, default=3.0,
                   help="training crop length (random stretch of each window's real audio)")
    p.add_argument("--crops-per-window", type=float, default=2.0,
                   help="training crops drawn per window per epoch (sets the steps per epoch)")
    p.add_argument("--eval-crop-seconds", type=float,
                   help="evaluation averages the logits of stretches this long (default: --crop-seconds)")
    p.add_argument("--eval-batch-size", type=int, default=4, help="whole windows per evaluation forward pass")
    p.add_argument("--time-masks", type=int, default=2, help="time masks per training crop")
    p.add_argument("--time-mask-fraction", type=float, default=0.1, help="largest time mask, fraction of the crop")
    p.add_argument("--freq-masks", type=int, default=2, help="frequency masks per training crop")
    p.add_argument("--freq-mask-mels", type=int, default=12, help="largest frequency mask, in mel bands")
    p.add_argument("--bn-momentum", type=float, default=0.3,
                   help="BatchNorm running-statistics momentum (PyTorch's default 0.1 lags behind the batch "
                        "statistics for the first ~30 steps, so short runs evaluate badly)")
    p.add_argument("--val-fraction", type=float, default=0.15,
                   help="stratified fraction of the training files held out for validation (when no `val` split)")
    p.add_argument("--test-fraction", type=float, default=0.25,
                   help="stratified fraction of the labeled files held out for test when there is no `test` split")
    p.add_argument("--folds", type=int, default=0,
                   help="K >= 2: stratified K-fold cross-validation over all labeled files instead of train/test")
    p.add_argument("--classes", help="comma-separated classes, in the network's output order, e.g. music,speech,noise "
                                     "(default: those of music,speech,noise the features hold); files of other "
                                     "labels are ignored")
    p.add_argument("--group-by", choices=["file", "source"], default="file",
                   help="--folds unit: 'source' holds whole sources (the featurize `source` column: a speaker, "
                        "composer or recording chain) out of training, to measure generalization to new sources")
    p.add_argument("--seed", type=int, default=0, help="random seed (splits, initialization, crops)")
    p.add_argument("--max-failures", type=int, default=2, help="worker failures to recover from (FailureConfig)")
    p.add_argument("--endpoint-url", help="S3-compatible endpoint (default: $AWS_ENDPOINT_URL)")
    p.add_argument("--address", help="Ray cluster address (default: $RAY_ADDRESS, else a local Ray)")
    console.add_verbose(p)
    p.add_argument("--fail-at-epoch", type=int, help=argparse.SUPPRESS)   # tests: the last rank raises once
    p.add_argument("--fail-marker", help=argparse.SUPPRESS)               # ... unless this file exists
    a = p.parse_args(argv)
    if a.name and a.resume:
        p.error("give --name or --resume, not both")
    if a.folds == 1 or a.folds < 0:
        p.error("--folds must be 0 (train/test) or >= 2")
    if a.num_workers < 1 or a.batch_size < a.num_workers:
        p.error("--num-workers must be >= 1 and --batch-size >= --num-workers")
    if a.crop_seconds <= 0 or a.epochs < 1:
        p.error("--crop-seconds must be > 0 and --epochs >= 1")
    if a.fail_at_epoch is not None and not a.fail_marker:
        p.error("--fail-at-epoch needs --fail-marker")
    return a


def _select(batch: pa.Table, roles: dict, clean_roles: tuple = ("test",)) -> pa.Table:
    """Ray Data UDF: the rows of the files in roles ({uri: role}), with a `role` column; in clean_roles
    only the files as they are (test metrics are on real recordings, not on their augmented copies)."""
    t = batch.filter(pc.is_in(batch.column("uri"), pa.array(sorted(roles), pa.string())))
    t = t.append_column("role", pa.array([roles[u] for u in t.column("uri").to_pylist()], pa.string()))
    copy = pc.and_(pc.is_in(t.column("role"), pa.array(list(clean_roles), pa.string())),
                   pc.not_equal(t.column("augment"), ""))
    return t.filter(pc.invert(copy))


def _error(msg: str) -> int:
    print(f"train: error: {msg}", file=sys.stderr)
    return 2


def run_one(a, s3: S3Options, shard_dirs: list[str], fcfg: FeatureConfig, roles: dict, files: dict,
            windows: dict, storage_uri: str, name: str, ray_resources: dict) -> dict:
    """One TorchTrainer run (train/val/test roles by file) -> rank 0's result dict."""
    import ray
    from ray.train import CheckpointConfig, DataConfig, FailureConfig, LoggingConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    classes = tuple(a.classes)
    ncfg = NetConfig(n_classes=len(classes), classes=classes)
    by_role = {r: sorted(u for u, x in roles.items() if x == r) for r in ("train", "val", "test")}
    n_win = {r: sum(windows[u] for u in by_role[r]) for r in by_role}
    counts = np.array([sum(windows[u] for u in by_role["train"] if files[u][0] == c) for c in classes], float)
    if (counts == 0).any():
        raise ValueError(f"the training files hold no windows of class(es) "
                         f"{[c for c, n in zip(classes, counts) if n == 0]}")
    if n_win["train"] < a.num_workers:
        raise ValueError(f"{n_win['train']} training windows are fewer than --num-workers {a.num_workers}")
    class_weights = (counts.sum() / (len(classes) * counts)).tolist()
    hop, sr = fcfg.hop_length, fcfg.sample_rate
    crop_frames = max(8, min(fcfg.n_frames(), int(round(a.crop_seconds * sr / hop))))
    eval_crop_frames = max(8, min(fcfg.n_frames(), int(round((a.eval_crop_seconds or a.crop_seconds) * sr / hop))))
    train_per_worker = n_win["train"] // a.num_workers * a.num_workers   # streaming_split(equal=True)
    steps = max(1, math.ceil(train_per_worker * a.crops_per_window / a.batch_size))
    total_cpu = ray_resources.get("CPU", 1.0)
    # whole CPUs where there are enough (fractions like 1.5 strand half CPUs on every node, and a Ray Data
    # task needs a whole one); 0.5 on a 2-core machine, so that one CPU stays free for Ray Data
    cpus = a.cpus_per_worker if a.cpus_per_worker is not None else \
        max(0.5, min(4.0, float((total_cpu - 1) // a.num_workers))) if not a.use_gpu else 1.0
    threads = a.threads_per_worker or max(1, int(total_cpu // a.num_workers))
    public = {k: v for k, v in vars(a).items() if k not in ("fail_at_epoch", "fail_marker")}
    public.update(cpus_per_worker=cpus, threads_per_worker=threads, crop_frames=crop_frames,
                  eval_crop_frames=eval_crop_frames, steps_per_epoch=steps, class_weights=class_weights,
                  windows=n_win, files={r: len(v) for r, v in by_role.items()})
    run_uri = storage.join(storage_uri, name)
    c = {"feature_config": fcfg.to_dict(), "net_config": ncfg.to_dict(), "s3": s3, "run_uri": run_uri,
         "threads": threads, "seed": a.seed, "lr": a.lr, "weight_decay": a.weight_decay, "epochs": a.epochs,
         "min_epochs": a.min_epochs, "patience": a.patience, "warmup_epochs": a.warmup_epochs,
         "label_smoothing": a.label_smoothing, "batch_size": a.batch_size, "steps_per_epoch": steps,
         "crop_frames": crop_frames, "eval_crop_frames": eval_crop_frames, "eval_batch_size": a.eval_batch_size,
         "time_masks": a.time_masks, "time_mask_fraction": a.time_mask_fraction, "freq_masks": a.freq_masks,
         "freq_mask_mels": a.freq_mask_mels, "bn_momentum": a.bn_momentum, "class_weights": class_weights, "n_bins": fcfg.n_bins,
         "fail_at_epoch": a.fail_at_epoch, "fail_marker": a.fail_marker, "public": public, "verbose": a.verbose}
    storage.write_json(storage.join(run_uri, "train_config.json"), public, s3)
    split_uri = {r: by_role[r] for r in by_role}
    storage.write_json(storage.join(run_uri, "splits.json"), split_uri, s3)
    print(f"train: {name}: {len(by_role['train'])}/{len(by_role['val'])}/{len(by_role['test'])} files "
          f"({n_win['train']}/{n_win['val']}/{n_win['test']} windows) train/val/test; {a.num_workers} workers x "
          f"{cpus:g} CPU{' + 1 GPU' if a.use_gpu else ''}, {threads} threads; {steps} steps/epoch of "
          f"{a.batch_size} crops of {crop_frames} frames", flush=True)

    fs = storage.arrow_fs(shard_dirs[0], s3)
    base = console.quiet(ray.data.read_parquet([storage.arrow_path(d) for d in shard_dirs], filesystem=fs),
                         a.verbose).select_columns(ROW_COLUMNS)
    # featurize writes blocks of consecutive (sorted: same-class) files, and streaming_split hands out whole
    # blocks: shuffle the rows, or one worker gets all music and the other all speech, every local batch is
    # one class, and BatchNorm learns from the batch composition (100% in training, 50% in evaluation)
    datasets = {"train": base.map_batches(_select, batch_format="pyarrow",
                                          fn_kwargs={"roles": {u: "train" for u in by_role["train"]}})
                .random_shuffle(seed=a.seed),
                "eval": base.map_batches(_select, batch_format="pyarrow", fn_kwargs={
                    "roles": {u: r for r in ("val", "test") for u in by_role[r]}})}
    run_config = RunConfig(
        name=name, storage_path=storage.arrow_path(storage_uri),
        storage_filesystem=storage.arrow_fs(storage_uri, s3) if storage.is_s3(storage_uri) else None,
        failure_config=FailureConfig(max_failures=a.max_failures),
        checkpoint_config=CheckpointConfig(num_to_keep=2),
        logging_config=LoggingConfig(log_level="INFO" if a.verbose else "WARNING"))  # Ray Train's own console lines
    # by reference from the module, also when this file runs as __main__ (`python pipelines/train.py`):
    # pickling __main__.train_loop by value drags torch.classes in and fails
    from pipelines.train import train_loop as loop

    trainer = TorchTrainer(
        loop, train_loop_config=c,
        torch_config=TorchConfig(backend="nccl" if a.use_gpu else "gloo"),
        scaling_config=ScalingConfig(num_workers=a.num_workers, use_gpu=a.use_gpu,
                                     resources_per_worker={"CPU": cpus, **({"GPU": 1} if a.use_gpu else {})}),
        run_config=run_config, datasets=datasets, dataset_config=DataConfig(datasets_to_split=["train"]))
    result = trainer.fit()
    out = result.return_value
    if out is None:
        raise RuntimeError(f"training run {name} returned no result (see {run_uri})")
    return out


def main(argv=None) -> int:
    a = parse_args(argv)
    s3 = S3Options.from_env(a.endpoint_url)
    t0 = time.time()
    try:
        shard_dirs, fcfg = shards.finished_shards(a.features, s3)
        storage.check_output(a.output, s3)
        files, sources, windows = file_table(a.features, s3)
    except (storage.StorageError, FileNotFoundError, ValueError) as e:
        return _error(str(e))
    present = {lab for lab, _ in files.values()}
    a.classes = tuple(a.classes.split(",")) if a.classes else tuple(c for c in CANONICAL if c in present)
    ignored = sorted(present - set(a.classes))
    files = {u: v for u, v in files.items() if v[0] in a.classes}
    if ignored:
        print(f"train: ignoring the files labeled {ignored} (not in --classes {','.join(a.classes)})", flush=True)
    if not files:
        return _error(f"{a.features} holds no windows labeled {','.join(a.classes) or 'music/speech/noise'} (labels "
                      "come from .../<split>/<music|speech|noise>/ paths or a featurize --manifest)")
    missing = [c for c in a.classes if c not in present]
    if missing or len(a.classes) < 2:
        return _error(f"{a.features} holds no files of class(es) {missing} (of --classes {','.join(a.classes)}); "
                      "training needs >= 2 classes, each with files")

    name = a.resume or a.name or time.strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6]
    run_root = storage.join(a.output, name)
    if a.resume and not storage.exists(run_root, s3):
        return _error(f"--resume {name}: {run_root} does not exist")
    if not a.resume and storage.exists(run_root, s3):
        return _error(f"{run_root} already exists: pass --resume {name} to continue it or choose another --name")
    if a.folds:
        labels = [files[u][0] for u in files]
        small = min(labels.count(c) for c in set(labels))
        if small < a.folds or len(set(labels)) < 2:
            return _error(f"--folds {a.folds} needs >= {a.folds} labeled files of each class; the smallest has {small}")
        groups = {u: sources[u] for u in files} if a.group_by == "source" else None
        if groups is not None and len(set(groups.values())) < a.folds:
            return _error(f"--folds {a.folds} --group-by source needs >= {a.folds} sources; {a.features} has "
                          f"{len(set(groups.values()))}")
        plans = [(f"fold-{k}", r) for k, r in enumerate(fold_roles(files, a.folds, a.val_fraction, a.seed, groups))]
        storage_uri = run_root
    else:
        plans = [(name, split_roles(files, a.val_fraction, a.test_fraction, a.seed))]
        storage_uri = a.output
    for pname, roles in plans:
        missing = [r for r in ("train", "test") if not any(x == r for x in roles.values())]
        if missing:
            return _error(f"{a.features}: no {' or '.join(missing)} files for run {pname}")

    import ray

    if not ray.is_initialized():  # tests and notebooks may have started Ray already
        console.init_ray(a.address or os.environ.get("RAY_ADDRESS") or "local", a.verbose)
    resources = ray.cluster_resources()
    results = []
    try:
        for pname, roles in plans:
            t1 = time.time()
            r = run_one(a, s3, shard_dirs, fcfg, roles, files, windows, storage_uri, pname, resources)
            r["wall_seconds"] = time.time() - t1
            results.append(r)
            h = r.get("test", {})
            print(f"train: {pname}: test accuracy {h.get('accuracy', float('nan')):.4f} on {h.get('n')} windows, "
                  f"ROC AUC {h.get('roc_auc')}, best epoch {r['best_epoch']} of {r['epochs_run']}, "
                  f"{r['train_samples_per_s']:.2f} crops/s, {r['wall_seconds']:.0f} s", flush=True)
    except ValueError as e:
        return _error(str(e))
    wall = time.time() - t0
    if a.folds:
        accs = np.array([r["test"]["accuracy"] for r in results])
        cv = {"folds": a.folds, "accuracy_mean": float(accs.mean()), "accuracy_std": float(accs.std(ddof=0)),
              "fold_accuracies": accs.tolist(), "fold_roc_auc": [r["test"]["roc_auc"] for r in results],
              "wall_seconds": wall, "fold_wall_seconds": [r["wall_seconds"] for r in results],
              "train_samples_per_s": float(np.mean([r["train_samples_per_s"] for r in results])),
              "peak_memory_mb_per_worker": max(r["peak_memory_mb_per_worker"] for r in results),
              "classes": list(a.classes), "group_by": a.group_by,
              "confusion_matrix": np.sum([r["test"]["confusion_matrix"] for r in results], axis=0).tolist(),
              "fold_per_class": [r["test"]["per_class"] for r in results]}
        storage.write_json(storage.join(run_root, "cv.json"), cv, s3)
        print(f"train: done: {a.folds}-fold CV accuracy {cv['accuracy_mean']:.4f} +- {cv['accuracy_std']:.4f} "
              f"({', '.join(f'{x:.3f}' for x in accs)}) in {wall:.0f} s; models at {run_root}/fold-*/model.pt, "
              f"report at {storage.join(run_root, 'cv.json')}", flush=True)
        return 0
    r = results[0]
    print(f"train: done: test accuracy {r['test']['accuracy']:.4f} ({r['test']['n']} windows, ROC AUC "
          f"{r['test']['roc_auc']}) in {wall:.0f} s; model at {storage.join(run_root, 'model.pt')}, "
          f"report at {storage.join(run_root, 'report')}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
