"""One Ray Train worker's training run: an epoch of random crops, evaluation, early stopping, checkpoints,
then the report and model.pt (pipelines/train_results.py; the method: pipelines/train.py's docstring). The
driver (pipelines/train.py) builds the TrainConfig and the datasets and hands `train_loop` to a TorchTrainer;
the windows come from the run's ingest path (train_data.MemoryIngest or train_stream.StreamIngest).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import tempfile
import time

import numpy as np
import torch

from model import Conv3DNet, FeatureConfig, expand
from model.checkpoint import checkpoint_dict, read_checkpoint
from model.crops import window_logits
from pipelines import console, train_data, train_stream
from pipelines.train_config import TrainConfig
from pipelines.train_ema import WeightEMA
from pipelines.train_results import test_report, write_results


@dataclasses.dataclass
class EarlyStopping:
    """Stop after `patience` epochs without a validation loss better by 1e-4, never before min_epochs;
    keeps the best epoch's weights (on CPU)."""
    patience: int
    min_epochs: int
    best_val_loss: float = float("inf")
    best_epoch: int | None = None
    bad_epochs: int = 0
    stopped: bool = False
    best_model: dict | None = None

    def update(self, epoch: int, val_loss: float, net: torch.nn.Module) -> None:
        if val_loss < self.best_val_loss - 1e-4 or self.best_model is None or not math.isfinite(val_loss):
            self.best_val_loss, self.best_epoch, self.bad_epochs = val_loss, epoch, 0
            self.best_model = {k: t.detach().cpu().clone() for k, t in net.state_dict().items()}
        else:
            self.bad_epochs += 1
        if epoch + 1 >= self.min_epochs and self.bad_epochs >= self.patience:
            self.stopped = True

    def state(self) -> dict:
        return {"best_val_loss": self.best_val_loss, "best_epoch": self.best_epoch,
                "bad_epochs": self.bad_epochs, "stopped": self.stopped}


# ------------------------------------------------------------------------------------------------
# checkpoints: plain data (model/checkpoint.py), written by rank 0 at every epoch's report

def save_checkpoint(tmpdir: str, net, fcfg: FeatureConfig, opt, state: dict, stopper: EarlyStopping,
                    cfg: TrainConfig, ema: WeightEMA | None = None):
    import ray.train

    extra = {} if ema is None else {"ema": {k: t.detach().cpu().contiguous() for k, t in ema.net.state_dict().items()}}
    with open(os.path.join(tmpdir, "model.pt"), "wb") as f:
        torch.save(checkpoint_dict(net, fcfg, optimizer=opt.state_dict(), state=json.dumps(state),
                                   best_model=stopper.best_model, train_config=json.dumps(cfg.to_dict()), **extra), f)
    return ray.train.Checkpoint.from_directory(tmpdir)


def restore(ckpt, net, cfg: TrainConfig) -> tuple[dict, dict | None, EarlyStopping, dict | None]:
    """-> (state {epoch, history, starts, ema_updates, ...}, optimizer state, early stopping, the weight
    average's state) of the Ray Train checkpoint (a replaced worker group or --resume), or of a fresh run
    when ckpt is None; loads net."""
    stopper = EarlyStopping(cfg.patience, cfg.min_epochs)
    if ckpt is None:
        return {"epoch": -1, "history": [], **stopper.state(), "starts": [], "ema_updates": 0}, None, stopper, None
    with ckpt.as_directory() as d:
        with open(os.path.join(d, "model.pt"), "rb") as f:
            saved = read_checkpoint(f)
    net.load_state_dict(saved["model"])
    state = json.loads(saved["state"])
    stopper = EarlyStopping(cfg.patience, cfg.min_epochs, best_model=saved["best_model"],
                            **{k: state[k] for k in stopper.state()})
    return state, saved["optimizer"], stopper, saved.get("ema")


# ------------------------------------------------------------------------------------------------
# one epoch, evaluation

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


def train_epoch(model, opt, loss_fn, batches, cfg: TrainConfig, n_bins: int, epoch: int, device, world: int,
                ema: WeightEMA | None = None) -> dict:
    """steps_per_epoch steps over `batches` (the ingest's local batches of uint8 crops and labels; every
    rank gets exactly steps_per_epoch), each followed by ema.update() when there is a weight average;
    -> the epoch's loss, accuracy and throughput over all ranks."""
    model.train()
    cuda = device.type == "cuda"
    t0 = time.time()
    steps, done = cfg.steps_per_epoch, 0
    tot_loss, tot_ok, tot_n = 0.0, 0, 0
    for step, (x, y) in enumerate(batches):
        y = torch.from_numpy(y).to(device)
        for g in opt.param_groups:
            g["lr"] = cfg.lr_at(epoch + step / steps)
        dense = expand(torch.from_numpy(x).to(device), n_bins).to(memory_format=torch.channels_last_3d)
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=cuda):
            logits = model(dense)
        loss = loss_fn(logits.float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if ema is not None:
            ema.update()
        tot_loss += float(loss.detach()) * len(y)
        tot_ok += int((logits.argmax(1) == y).sum())
        tot_n += len(y)
        done += 1
    if done != steps:  # the ingest's promise; a rank that stepped differently would hang DDP's all-reduce
        raise RuntimeError(f"epoch {epoch}: {done} steps instead of {steps}")
    train_s = time.time() - t0
    agg = _gather((tot_loss, tot_ok, tot_n), world)
    n_all = sum(a[2] for a in agg)
    return {"loss": sum(a[0] for a in agg) / n_all, "acc": sum(a[1] for a in agg) / n_all,
            "seconds": train_s, "samples_per_s": n_all / train_s}


def evaluate(net, parts, cfg: TrainConfig, n_bins: int, device, world: int) -> dict:
    """Every rank evaluates its windows (`parts`: arrays of train_data.rows_to_arrays), all ranks get all:
    probs (N, C), labels, keys, in key order."""
    mine = {"logits": [], "label": [], "uri": [], "start": []}
    for data in parts:
        mine["logits"].append(window_logits(net, data["index"], data["real"], cfg.eval_crop_frames, n_bins, device,
                                            cfg.eval_batch_size).numpy())
        mine["label"].append(data["label"])
        mine["uri"] += data["uri"]
        mine["start"] += data["start"]
    part = {"logits": np.concatenate(mine["logits"]) if mine["logits"] else np.zeros((0, len(cfg.classes)), np.float32),
            "label": np.concatenate(mine["label"]) if mine["label"] else np.zeros(0, np.int64),
            "uri": mine["uri"], "start": mine["start"]}
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


def _peak_memory_mb(device) -> float:
    import resource

    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux
    if device.type == "cuda":
        return max(rss, torch.cuda.max_memory_allocated(device) / 2**20)
    return rss


# ------------------------------------------------------------------------------------------------
# Ray Train's per-worker function

def prepare(cfg: TrainConfig, ckpt, device, world: int) -> tuple:
    """-> (net, model: what trains it, DDP-wrapped when world > 1, optimizer, state, early stopping, the
    weight average or None without --ema-decay), continued from the Ray Train checkpoint when there is one
    (a replaced worker group or --resume)."""
    import ray.train.torch

    torch.manual_seed(cfg.seed)
    net = Conv3DNet(cfg.net_config())
    for m in net.modules():  # running statistics that keep up with few, small steps (see --bn-momentum)
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.momentum = cfg.bn_momentum
    state, opt_state, stopper, ema_state = restore(ckpt, net, cfg)
    state["starts"].append(state["epoch"] + 1)
    # channels-last on the CPU too: oneDNN's 3-D convolutions took a training step of 8 crops from 2.48 to
    # 1.86 s on one thread here (the same numbers within float rounding)
    net = net.to(device).to(memory_format=torch.channels_last_3d)
    model = ray.train.torch.prepare_model(net, parallel_strategy_kwargs={"find_unused_parameters": False}) \
        if world > 1 else net
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    if opt_state is not None:
        opt.load_state_dict(opt_state)
    ema = WeightEMA(net, cfg.ema_decay, ema_state, state.get("ema_updates", 0)) if cfg.ema_decay else None
    return net, model, opt, state, stopper, ema


def train_loop(config: dict) -> dict | None:
    """Ray Train's per-worker function (rank 0 alone writes files; every rank reports every epoch);
    config: loop_config(...). -> rank 0: metrics.json's content without the history; others: None."""
    import ray.train
    import ray.train.torch

    cfg, fcfg = TrainConfig.from_dict(config["train"]), FeatureConfig.from_dict(config["features"])
    if not cfg.verbose:  # Ray Train logs "Reporting training result" per rank and epoch through the root logger
        logging.getLogger().setLevel(logging.WARNING)   # (its logger is named after a file path), at INFO
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    device = ray.train.torch.get_device()
    if device.type != "cuda":
        torch.set_num_threads(cfg.threads_per_worker)
    t_start = time.time()
    ingest = (train_stream.StreamIngest if cfg.ingest_path == "stream" else train_data.MemoryIngest)(cfg, fcfg, rank, world)
    load_s = time.time() - t_start   # the in-memory path's one read; the stream path reads every epoch

    net, model, opt, state, stopper, ema = prepare(cfg, ray.train.get_checkpoint(), device, world)
    judged = net if ema is None else ema.net   # the weights evaluated, kept as the best and written to model.pt
    loss_fn = torch.nn.CrossEntropyLoss(weight=torch.tensor(cfg.class_weights, dtype=torch.float32, device=device),
                                        label_smoothing=cfg.label_smoothing)
    rng = np.random.default_rng([cfg.seed, rank, state["starts"][-1]])
    for epoch in range(state["starts"][-1], cfg.epochs):
        if stopper.stopped:
            break
        t0 = time.time()
        tr = train_epoch(model, opt, loss_fn, ingest.batches(rng), cfg, fcfg.n_bins, epoch, device, world, ema)
        _sync_buffers(net, world)  # BatchNorm statistics: rank 0's everywhere (DDP re-broadcasts only at forward)
        if ema is not None:
            _sync_buffers(ema.net, world)
        judged.eval()
        v = evaluate(judged, ingest.windows("val"), cfg, fcfg.n_bins, device, world)
        rec = {"epoch": epoch, "train_loss": tr["loss"], "train_acc": tr["acc"], "val_loss": v["loss"],
               "val_acc": v["acc"], "lr": cfg.lr_at(epoch + 1), "train_seconds": tr["seconds"],
               "train_samples_per_s": tr["samples_per_s"], "epoch_seconds": time.time() - t0}
        state["history"].append(rec)
        stopper.update(epoch, v["loss"], judged)
        state.update(stopper.state(), epoch=epoch, ema_updates=ema.updates if ema else 0)
        if rank == 0:
            left = (time.time() - t_start - load_s) / (epoch + 1 - state["starts"][-1]) * (cfg.epochs - epoch - 1)
            print(f"train: epoch {epoch} of 0-{cfg.epochs - 1} (ETA {console.clock(left)} at most): train loss "
                  f"{rec['train_loss']:.4f} acc {rec['train_acc']:.3f}, val loss "
                  f"{rec['val_loss']:.4f} acc {rec['val_acc']:.3f}, {rec['train_samples_per_s']:.1f} crops/s, "
                  f"{rec['epoch_seconds']:.0f} s{' (best)' if stopper.best_epoch == epoch else ''}", flush=True)
        with tempfile.TemporaryDirectory() as tmp:
            ray.train.report({k: rec[k] for k in ("epoch", "train_loss", "train_acc", "val_loss", "val_acc")},
                             checkpoint=save_checkpoint(tmp, net, fcfg, opt, state, stopper, cfg, ema) if rank == 0 else None,
                             checkpoint_dir_name=f"checkpoint_epoch_{epoch:04d}")

    out = finish(net, ingest.windows("test"), state, stopper, cfg, fcfg, config, device, rank, world, load_s)
    ray.train.report({"epoch": state["epoch"], "done": True,
                      "test_accuracy": out["test"]["accuracy"] if out else None})
    return out


def finish(net, test, state: dict, stopper: EarlyStopping, cfg: TrainConfig, fcfg: FeatureConfig,
           config: dict, device, rank: int, world: int, load_s: float) -> dict | None:
    """The best validation epoch's weights on the test windows; rank 0 writes the report and model.pt and
    returns metrics.json's content without the history."""
    net.load_state_dict(stopper.best_model)
    net.eval()
    t0 = time.time()
    te = evaluate(net, test, cfg, fcfg.n_bins, device, world)
    test_s = time.time() - t0
    peaks = _gather(_peak_memory_mb(device), world)
    if rank != 0:
        return None
    report = {**test_report(te, state, stopper, cfg, world, device),
              "peak_memory_mb_per_worker": max(peaks), "data_load_seconds": load_s, "test_eval_seconds": test_s,
              "ingest": cfg.ingest_path, "worker_data_mb_estimate": cfg.worker_data_mb,
              "test_windows_per_s": len(te["label"]) / test_s if test_s else None,
              "train_config": cfg.to_dict(), "run": config["run_uri"]}
    write_results(report, te, net, fcfg, cfg, config["run_uri"], config["s3"])
    return {k: v for k, v in report.items() if k != "history"}
