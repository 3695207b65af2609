"""What a training job runs, before Ray starts: the classes (--classes, else those the features hold), the run's
name (a --resume checked against the run's settings), one train/val/test run or K cross-validation folds over
the files, and the folds' summary (cv.json)."""

from __future__ import annotations

import time
import uuid

import numpy as np

from model import NetConfig
from pipelines import storage
from pipelines.errors import JobError
from pipelines.splits import fold_roles, split_roles
from pipelines.storage import S3Options
from pipelines.train_config import TrainConfig

CANONICAL = ("music", "speech", "noise")  # class order when --classes is not given


def select_classes(cfg: TrainConfig, files: dict) -> tuple[tuple[str, ...], dict]:
    """-> (the classes: cfg.classes, else those of CANONICAL the features hold; the files of those classes);
    raises ValueError when they are not >= 2 classes with files."""
    present = {lab for lab, _ in files.values()}
    classes = cfg.classes or tuple(c for c in CANONICAL if c in present)
    ignored = sorted(present - set(classes))
    files = {u: v for u, v in files.items() if v[0] in classes}
    if ignored:
        print(f"train: ignoring the files labeled {ignored} (not in --classes {','.join(classes)})", flush=True)
    if not files:
        raise ValueError(f"{cfg.features} holds no windows labeled {','.join(classes) or 'music/speech/noise'} "
                         "(labels come from .../<split>/<music|speech|noise>/ paths or a featurize --manifest)")
    missing = [c for c in classes if c not in present]
    if missing or len(classes) < 2:
        raise ValueError(f"{cfg.features} holds no files of class(es) {missing} (of --classes {','.join(classes)}); "
                         "training needs >= 2 classes, each with files")
    return classes, files


def run_name(cfg: TrainConfig, s3: S3Options) -> tuple[str, str]:
    """-> (NAME, OUT/NAME): --resume's (must exist), --name's or a new time-stamped one (must not exist)."""
    name = cfg.resume or cfg.name or time.strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6]
    run_root = storage.join(cfg.output, name)
    if cfg.resume and not storage.exists(run_root, s3):
        raise JobError(f"--resume {name}: {run_root} does not exist")
    if not cfg.resume and storage.exists(run_root, s3):
        raise JobError(f"{run_root} already exists: pass --resume {name} to continue it or choose another --name")
    if cfg.resume:
        check_resume(cfg, run_root, s3)
    return name, run_root


def check_resume(cfg: TrainConfig, run_root: str, s3: S3Options) -> None:
    """--resume goes on with the run's own --ema-decay (the best epoch kept so far, and the average itself, would
    otherwise be of other weights than the rest of the run's), --channels and --pooling (its checkpoints' shapes)."""
    for uri in (storage.join(run_root, "train_config.json"), storage.join(run_root, "fold-0", "train_config.json")):
        if storage.exists(uri, s3):
            run = storage.read_json(uri, s3)
            for key, was, now in (("ema-decay", run.get("ema_decay", 0.0), cfg.ema_decay),
                                  ("channels", ",".join(map(str, run.get("channels", NetConfig.channels))),
                                   ",".join(map(str, cfg.channels))),
                                  ("pooling", run.get("pooling", NetConfig.pooling), cfg.pooling)):
                if was != now:
                    raise JobError(f"--resume {cfg.resume}: {uri} was trained with --{key} {was}, not {now}: "
                                   f"pass --{key} {was}")
            return


def plan_runs(cfg: TrainConfig, files: dict, sources: dict, name: str, run_root: str) -> tuple[list, str]:
    """-> ([(run name, {uri: role})], the folder the runs go in): one train/val/test run, or K folds
    under OUT/NAME; raises ValueError when a run would lack train or test files."""
    if cfg.folds:
        labels = [files[u][0] for u in files]
        small = min(labels.count(c) for c in set(labels))
        if small < cfg.folds or len(set(labels)) < 2:
            raise ValueError(f"--folds {cfg.folds} needs >= {cfg.folds} labeled files of each class; the smallest has {small}")
        groups = {u: sources[u] for u in files} if cfg.group_by == "source" else None
        if groups is not None and len(set(groups.values())) < cfg.folds:
            raise ValueError(f"--folds {cfg.folds} --group-by source needs >= {cfg.folds} sources; {cfg.features} has "
                             f"{len(set(groups.values()))}")
        plans = [(f"fold-{k}", r) for k, r in enumerate(fold_roles(files, cfg.folds, cfg.val_fraction, cfg.seed, groups))]
        storage_uri = run_root
    else:
        plans = [(name, split_roles(files, cfg.val_fraction, cfg.test_fraction, cfg.seed))]
        storage_uri = cfg.output
    for pname, roles in plans:
        missing = [r for r in ("train", "test") if not any(x == r for x in roles.values())]
        if missing:
            raise ValueError(f"{cfg.features}: no {' or '.join(missing)} files for run {pname}")
    return plans, storage_uri


def cv_summary(cfg: TrainConfig, results: list[dict], wall: float) -> dict:
    """cv.json: the folds' test figures, mean +- std."""
    accs = np.array([r["test"]["accuracy"] for r in results])
    return {"folds": cfg.folds, "accuracy_mean": float(accs.mean()), "accuracy_std": float(accs.std(ddof=0)),
            "fold_accuracies": accs.tolist(), "fold_roc_auc": [r["test"]["roc_auc"] for r in results],
            "wall_seconds": wall, "fold_wall_seconds": [r["wall_seconds"] for r in results],
            "train_samples_per_s": float(np.mean([r["train_samples_per_s"] for r in results])),
            "peak_memory_mb_per_worker": max(r["peak_memory_mb_per_worker"] for r in results),
            "classes": list(cfg.classes), "group_by": cfg.group_by,
            "confusion_matrix": np.sum([r["test"]["confusion_matrix"] for r in results], axis=0).tolist(),
            "fold_per_class": [r["test"]["per_class"] for r in results]}
