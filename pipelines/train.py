"""train: Ray Train DDP of the seed's Conv3D network on featurize's Parquet shards, to a real accuracy.

Ray Train's TorchTrainer runs DDP over --num-workers workers (NCCL on GPUs, gloo on CPUs). Each worker
reads its shard of the training windows through Ray Data once (uint8 magma indices, ~165 kB per 30 s
window), keeps them in memory, and trains on random time crops of them, expanding the index to the
dense (4, 10, n_mels, frames) tensor on its own device. When that would not fit --memory-budget-mb (or with
--ingest stream) it streams them instead: every epoch reads them again and cuts the crops as they arrive.

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

This file is the driver (options, split planning, one TorchTrainer per run); pipelines/train_config.py holds
TrainConfig, pipelines/train_data.py the rows from shards to worker arrays, pipelines/train_loop.py the worker.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import uuid

if __package__ in (None, ""):  # `python pipelines/train.py`: make the repository root importable
    _ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    sys.path.insert(0, _ROOT)
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [_ROOT, os.environ.get("PYTHONPATH")]))

import numpy as np  # noqa: E402

from model import FeatureConfig  # noqa: E402,F401  (benchmarks/accuracy.py reads train.FeatureConfig)
from pipelines import console, shards, storage, train_data  # noqa: E402
from pipelines.splits import fold_roles, split_roles  # noqa: E402
from pipelines.storage import S3Options  # noqa: E402
from pipelines.train_config import TrainConfig, loop_config, resolve  # noqa: E402
# Ray pickles train_loop by reference to its module, also when this file runs as __main__ (`python
# pipelines/train.py`): a function of __main__ would be pickled by value, which drags torch.classes in and fails
from pipelines.train_loop import train_loop  # noqa: E402

CANONICAL = ("music", "speech", "noise")  # class order when --classes is not given


# ------------------------------------------------------------------------------------------------
# the driver

def parser() -> argparse.ArgumentParser:
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
    p.add_argument("--ingest", choices=["auto", "memory", "stream"], default="auto",
                   help="memory: each worker loads its windows once; stream: each epoch streams them through Ray "
                        "Data (bounded by disk, not RAM); auto: memory when a worker's load fits --memory-budget-mb")
    p.add_argument("--memory-budget-mb", type=float, default=4096.0,
                   help="per worker: the largest in-memory load --ingest auto accepts; a quarter of it is the "
                        "stream path's shuffle buffer")
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
    p.add_argument("--class-weighting", choices=["balanced", "sqrt", "none"], default="balanced",
                   help="loss weight per class from its training windows: balanced (every class alike), sqrt "
                        "(inverse square root of its share) or none")
    p.add_argument("--group-by", choices=["file", "source"], default="file",
                   help="--folds unit: 'source' holds whole sources (the featurize `source` column: a speaker, "
                        "composer or recording chain) out of training, to measure generalization to new sources")
    p.add_argument("--seed", type=int, default=0, help="random seed (splits, initialization, crops)")
    p.add_argument("--max-failures", type=int, default=2, help="worker failures to recover from (FailureConfig)")
    p.add_argument("--endpoint-url", help="S3-compatible endpoint (default: $AWS_ENDPOINT_URL)")
    p.add_argument("--address", help="Ray cluster address (default: $RAY_ADDRESS, else a local Ray)")
    console.add_verbose(p)
    return p


def parse_args(argv=None) -> argparse.Namespace:
    p = parser()
    a = p.parse_args(argv)
    if a.name and a.resume:
        p.error("give --name or --resume, not both")
    if a.folds == 1 or a.folds < 0:
        p.error("--folds must be 0 (train/test) or >= 2")
    if a.num_workers < 1 or a.batch_size < a.num_workers:
        p.error("--num-workers must be >= 1 and --batch-size >= --num-workers")
    if a.memory_budget_mb <= 0:
        p.error("--memory-budget-mb must be > 0")
    if a.crop_seconds <= 0 or a.epochs < 1:
        p.error("--crop-seconds must be > 0 and --epochs >= 1")
    return a


def _error(msg: str) -> int:
    print(f"train: error: {msg}", file=sys.stderr)
    return 2


def run_one(cfg: TrainConfig, fcfg: FeatureConfig, shard_dirs: list[str], roles: dict, storage_uri: str,
            name: str, s3: S3Options) -> dict:
    """One TorchTrainer run (train/val/test roles by file) -> rank 0's result dict."""
    from ray.train import CheckpointConfig, DataConfig, FailureConfig, LoggingConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    by_role = {r: sorted(u for u, x in roles.items() if x == r) for r in ("train", "val", "test")}
    run_uri = storage.join(storage_uri, name)
    storage.write_json(storage.join(run_uri, "train_config.json"), cfg.to_dict(), s3)
    storage.write_json(storage.join(run_uri, "splits.json"), by_role, s3)
    n_win = cfg.windows
    print(f"train: {name}: {len(by_role['train'])}/{len(by_role['val'])}/{len(by_role['test'])} files "
          f"({n_win['train']}/{n_win['val']}/{n_win['test']} windows) train/val/test; {cfg.num_workers} workers x "
          f"{cfg.cpus_per_worker:g} CPU{' + 1 GPU' if cfg.use_gpu else ''}, {cfg.threads_per_worker} threads; "
          f"{cfg.steps_per_epoch} steps/epoch of {cfg.batch_size} crops of {cfg.crop_frames} frames; ingest "
          f"{train_data.describe(cfg)}", flush=True)

    run_config = RunConfig(
        name=name, storage_path=storage.arrow_path(storage_uri),
        storage_filesystem=storage.arrow_fs(storage_uri, s3) if storage.is_s3(storage_uri) else None,
        failure_config=FailureConfig(max_failures=cfg.max_failures),
        checkpoint_config=CheckpointConfig(num_to_keep=2),
        logging_config=LoggingConfig(log_level="INFO" if cfg.verbose else "WARNING"))  # Ray Train's own console lines
    trainer = TorchTrainer(
        train_loop, train_loop_config=loop_config(cfg, fcfg, run_uri, s3),
        torch_config=TorchConfig(backend="nccl" if cfg.use_gpu else "gloo"),
        scaling_config=ScalingConfig(num_workers=cfg.num_workers, use_gpu=cfg.use_gpu, resources_per_worker={
            "CPU": cfg.cpus_per_worker, **({"GPU": 1} if cfg.use_gpu else {})}),
        run_config=run_config, datasets=train_data.datasets(shard_dirs, by_role, cfg.seed, s3, cfg.verbose, cfg.ingest_path),
        dataset_config=DataConfig(datasets_to_split=["train"]))
    result = trainer.fit()
    out = result.return_value
    if out is None:
        raise RuntimeError(f"training run {name} returned no result (see {run_uri})")
    return out


def select_classes(a, files: dict) -> dict:
    """Sets a.classes (--classes, else those of CANONICAL the features hold) -> the files of those classes;
    raises ValueError when they are not >= 2 classes with files."""
    present = {lab for lab, _ in files.values()}
    a.classes = tuple(a.classes.split(",")) if a.classes else tuple(c for c in CANONICAL if c in present)
    ignored = sorted(present - set(a.classes))
    files = {u: v for u, v in files.items() if v[0] in a.classes}
    if ignored:
        print(f"train: ignoring the files labeled {ignored} (not in --classes {','.join(a.classes)})", flush=True)
    if not files:
        raise ValueError(f"{a.features} holds no windows labeled {','.join(a.classes) or 'music/speech/noise'} "
                         "(labels come from .../<split>/<music|speech|noise>/ paths or a featurize --manifest)")
    missing = [c for c in a.classes if c not in present]
    if missing or len(a.classes) < 2:
        raise ValueError(f"{a.features} holds no files of class(es) {missing} (of --classes {','.join(a.classes)}); "
                         "training needs >= 2 classes, each with files")
    return files


def plan_runs(a, files: dict, sources: dict, name: str, run_root: str) -> tuple[list, str]:
    """-> ([(run name, {uri: role})], the folder the runs go in): one train/val/test run, or K folds
    under OUT/NAME; raises ValueError when a run would lack train or test files."""
    if a.folds:
        labels = [files[u][0] for u in files]
        small = min(labels.count(c) for c in set(labels))
        if small < a.folds or len(set(labels)) < 2:
            raise ValueError(f"--folds {a.folds} needs >= {a.folds} labeled files of each class; the smallest has {small}")
        groups = {u: sources[u] for u in files} if a.group_by == "source" else None
        if groups is not None and len(set(groups.values())) < a.folds:
            raise ValueError(f"--folds {a.folds} --group-by source needs >= {a.folds} sources; {a.features} has "
                             f"{len(set(groups.values()))}")
        plans = [(f"fold-{k}", r) for k, r in enumerate(fold_roles(files, a.folds, a.val_fraction, a.seed, groups))]
        storage_uri = run_root
    else:
        plans = [(name, split_roles(files, a.val_fraction, a.test_fraction, a.seed))]
        storage_uri = a.output
    for pname, roles in plans:
        missing = [r for r in ("train", "test") if not any(x == r for x in roles.values())]
        if missing:
            raise ValueError(f"{a.features}: no {' or '.join(missing)} files for run {pname}")
    return plans, storage_uri


def cv_summary(a, results: list[dict], wall: float) -> dict:
    """cv.json: the folds' test figures, mean +- std."""
    accs = np.array([r["test"]["accuracy"] for r in results])
    return {"folds": a.folds, "accuracy_mean": float(accs.mean()), "accuracy_std": float(accs.std(ddof=0)),
            "fold_accuracies": accs.tolist(), "fold_roc_auc": [r["test"]["roc_auc"] for r in results],
            "wall_seconds": wall, "fold_wall_seconds": [r["wall_seconds"] for r in results],
            "train_samples_per_s": float(np.mean([r["train_samples_per_s"] for r in results])),
            "peak_memory_mb_per_worker": max(r["peak_memory_mb_per_worker"] for r in results),
            "classes": list(a.classes), "group_by": a.group_by,
            "confusion_matrix": np.sum([r["test"]["confusion_matrix"] for r in results], axis=0).tolist(),
            "fold_per_class": [r["test"]["per_class"] for r in results]}


def main(argv=None) -> int:
    a = parse_args(argv)
    s3 = S3Options.from_env(a.endpoint_url)
    t0 = time.time()
    try:
        shard_dirs, fcfg = shards.finished_shards(a.features, s3)
        storage.check_output(a.output, s3)
        files, sources, windows = train_data.file_table(a.features, s3)
        files = select_classes(a, files)
    except (storage.StorageError, FileNotFoundError, ValueError) as e:
        return _error(str(e))

    name = a.resume or a.name or time.strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6]
    run_root = storage.join(a.output, name)
    if a.resume and not storage.exists(run_root, s3):
        return _error(f"--resume {name}: {run_root} does not exist")
    if not a.resume and storage.exists(run_root, s3):
        return _error(f"{run_root} already exists: pass --resume {name} to continue it or choose another --name")
    try:
        plans, storage_uri = plan_runs(a, files, sources, name, run_root)
    except ValueError as e:
        return _error(str(e))

    import ray

    if not ray.is_initialized():  # tests and notebooks may have started Ray already
        console.init_ray(a.address or os.environ.get("RAY_ADDRESS") or "local", a.verbose)
    resources = ray.cluster_resources()
    results = []
    try:
        for pname, roles in plans:
            t1 = time.time()
            cfg = resolve(vars(a), fcfg, roles, files, windows, resources.get("CPU", 1.0))
            r = run_one(cfg, fcfg, shard_dirs, roles, storage_uri, pname, s3)
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
        cv = cv_summary(a, results, wall)
        storage.write_json(storage.join(run_root, "cv.json"), cv, s3)
        print(f"train: done: {a.folds}-fold CV accuracy {cv['accuracy_mean']:.4f} +- {cv['accuracy_std']:.4f} "
              f"({', '.join(f'{x:.3f}' for x in cv['fold_accuracies'])}) in {wall:.0f} s; models at "
              f"{run_root}/fold-*/model.pt, report at {storage.join(run_root, 'cv.json')}", flush=True)
        return 0
    r = results[0]
    print(f"train: done: test accuracy {r['test']['accuracy']:.4f} ({r['test']['n']} windows, ROC AUC "
          f"{r['test']['roc_auc']}) in {wall:.0f} s; model at {storage.join(run_root, 'model.pt')}, "
          f"report at {storage.join(run_root, 'report')}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
