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
    # from Python: the same run as a function (pipelines/api.py)
    train(TrainConfig(features="FEATURES", output="runs", folds=5))          # -> TrainResult

What it does against what sank the seed (50% test accuracy, one class predicted):
  * splits are leakage-free by FILE: all windows of one file stay in one of train / val / test (or one CV
    fold); validation is a stratified part of `train` (or the `val` split when the features have one);
  * class-weighted cross-entropy (--class-weighting), AdamW with weight decay, linear warm-up then cosine learning rate,
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

This file is the driver (options, one TorchTrainer per run; from Python: pipelines.api.train(TrainConfig(...)));
pipelines/train_config.py holds TrainConfig and TrainResult, pipelines/train_plan.py the classes and the
split planning, pipelines/train_data.py the rows from shards to worker arrays, pipelines/train_loop.py the worker.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time

if __package__ in (None, ""):  # `python pipelines/train.py`: make the repository root importable
    _ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    sys.path.insert(0, _ROOT)
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [_ROOT, os.environ.get("PYTHONPATH")]))

from model import FeatureConfig  # noqa: E402  (benchmarks/accuracy.py reads train.FeatureConfig)
from model.net import POOLINGS  # noqa: E402
from pipelines import console, shards, storage, train_data  # noqa: E402
from pipelines.errors import JobError, run_cli  # noqa: E402
from pipelines.storage import S3Options  # noqa: E402
from pipelines.train_config import TrainConfig, TrainResult, loop_config, resolve  # noqa: E402
from pipelines.train_plan import cv_summary, plan_runs, run_name, select_classes  # noqa: E402
# Ray pickles train_loop by reference to its module, also when this file runs as __main__ (`python
# pipelines/train.py`): a function of __main__ would be pickled by value, which drags torch.classes in and fails
from pipelines.train_loop import train_loop  # noqa: E402


# ------------------------------------------------------------------------------------------------
# the driver

def add_schedule_options(p: argparse.ArgumentParser) -> None:
    """The options of the optimization, the crops and their masking."""
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
    p.add_argument("--ema-decay", type=float, default=0.0,
                   help="keep an exponential moving average of the weights (decay per step, e.g. 0.995: about the "
                        "last 200 steps) and evaluate, keep and write it instead of the raw weights; 0: off")


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
    add_schedule_options(p)
    p.add_argument("--val-fraction", type=float, default=0.15,
                   help="stratified fraction of the training files held out for validation (when no `val` split)")
    p.add_argument("--test-fraction", type=float, default=0.25,
                   help="stratified fraction of the labeled files held out for test when there is no `test` split")
    p.add_argument("--folds", type=int, default=0,
                   help="K >= 2: stratified K-fold cross-validation over all labeled files instead of train/test")
    p.add_argument("--classes", help="comma-separated classes, in the network's output order, e.g. music,speech,noise "
                                     "(default: those of music,speech,noise the features hold); files of other "
                                     "labels are ignored")
    p.add_argument("--channels", default=(32, 64, 128), help="the three conv blocks' widths, comma-separated: "
                   "the seed's network, or a wider one of the same family (e.g. 48,96,192: ~2x the convolutions' work)")
    p.add_argument("--pooling", choices=POOLINGS, default=POOLINGS[0], help="over time, before the dense head: "
                   "mean (the seed's) or stats (each channel's mean and standard deviation, model/net.py)")
    p.add_argument("--class-weighting", choices=["balanced", "sqrt", "none"], default="sqrt",
                   help="loss weight per class from its training windows: balanced (every class alike), sqrt "
                        "(inverse square root of its share; on GTZAN + corpus it lifted clip accuracy from "
                        "82.8-95.3%% to 90.6-98.4%% over balanced, README) or none")
    p.add_argument("--group-by", choices=["file", "source"], default="file",
                   help="--folds unit: 'source' holds whole sources (the featurize `source` column: a speaker, "
                        "composer or recording chain) out of training, to measure generalization to new sources")
    p.add_argument("--seed", type=int, default=0, help="random seed (splits, initialization, crops)")
    p.add_argument("--max-failures", type=int, default=2, help="worker failures to recover from (FailureConfig)")
    console.add_cluster_options(p)
    return p


def config_of(a: argparse.Namespace) -> TrainConfig:
    """The parsed options -> the run's TrainConfig (--classes as a tuple; raises ValueError naming a bad option)."""
    return TrainConfig.from_dict({**vars(a), "classes": tuple(a.classes.split(",")) if a.classes else ()})


def parse_args(argv=None) -> argparse.Namespace:
    """The options, in TrainConfig's field order (classes: the --classes string or None)."""
    return console.parse_checked(parser(), argv, config_of)


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


def load_features(cfg: TrainConfig, s3: S3Options) -> tuple[TrainConfig, list[str], FeatureConfig, dict, dict, dict]:
    """-> (cfg with its classes, the shard folders, their FeatureConfig, {uri: (label, split)} of the files of
    those classes, {uri: source}, {uri: windows}); raises JobError naming a bad features or output location."""
    try:
        shard_dirs, fcfg = shards.finished_shards(storage.absolute(cfg.features), s3)   # paths the workers read
        storage.check_output(cfg.output, s3)
        files, sources, windows = train_data.file_table(storage.absolute(cfg.features), s3)
        classes, files = select_classes(cfg, files)
    except (storage.StorageError, FileNotFoundError, ValueError) as e:
        raise JobError(str(e)) from e
    return dataclasses.replace(cfg, classes=classes), shard_dirs, fcfg, files, sources, windows


def result_of(cfg: TrainConfig, name: str, run_root: str, results: list[dict], wall: float,
              s3: S3Options) -> TrainResult:
    """The runs' results -> TrainResult; with folds, writes cv.json first."""
    if cfg.folds:
        cv = cv_summary(cfg, results, wall)
        storage.write_json(storage.join(run_root, "cv.json"), cv, s3)
        return TrainResult(name=name, run_dir=run_root, model=None, report=storage.join(run_root, "cv.json"),
                           test_accuracy=cv["accuracy_mean"], test_windows=sum(r["test"]["n"] for r in results),
                           roc_auc=None, wall_seconds=wall, folds=cfg.folds, accuracy_std=cv["accuracy_std"],
                           fold_accuracies=tuple(cv["fold_accuracies"]),
                           fold_models=tuple(storage.join(run_root, f"fold-{k}", "model.pt") for k in range(cfg.folds)))
    t = results[0]["test"]
    return TrainResult(name=name, run_dir=run_root, model=storage.join(run_root, "model.pt"),
                       report=storage.join(run_root, "report"), test_accuracy=t["accuracy"], test_windows=t["n"],
                       roc_auc=t["roc_auc"], wall_seconds=wall)


def train(cfg: TrainConfig) -> TrainResult:
    """Train on the shards of cfg.features into cfg.output/NAME with Ray Train (the Ray of this process if one
    is up, else cfg.address, $RAY_ADDRESS or a new local one): one train/val/test run, or cfg.folds folds.
    Prints the job's progress lines; raises JobError for bad input. Only the settings the CLI names are
    read from cfg; the fields after `address` are derived per run (pipelines/train_config.resolve)."""
    s3 = S3Options.from_env(cfg.endpoint_url)
    t0 = time.time()
    cfg, shard_dirs, fcfg, files, sources, windows = load_features(cfg, s3)
    name, run_root = run_name(cfg, s3)
    try:
        plans, storage_uri = plan_runs(cfg, files, sources, name, run_root)
    except ValueError as e:
        raise JobError(str(e)) from e
    console.ensure_ray(cfg.address, cfg.verbose)
    import ray

    total_cpu = ray.cluster_resources().get("CPU", 1.0)
    results = []
    try:
        for pname, roles in plans:
            t1 = time.time()
            run_cfg = resolve(cfg.to_dict(), fcfg, roles, files, windows, total_cpu)
            r = run_one(run_cfg, fcfg, shard_dirs, roles, storage.absolute(storage_uri), pname, s3)
            r["wall_seconds"] = time.time() - t1
            results.append(r)
            h = r.get("test", {})
            print(f"train: {pname}: test accuracy {h.get('accuracy', float('nan')):.4f} on {h.get('n')} windows, "
                  f"ROC AUC {h.get('roc_auc')}, best epoch {r['best_epoch']} of {r['epochs_run']}, "
                  f"{r['train_samples_per_s']:.2f} crops/s, {r['wall_seconds']:.0f} s", flush=True)
    except ValueError as e:
        raise JobError(str(e)) from e
    return result_of(cfg, name, run_root, results, time.time() - t0, s3)


def main(argv=None) -> int:
    return run_cli("train", train, config_of(parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
