"""TrainConfig: every setting of a training run, typed and frozen, as the CLI of pipelines/train.py names
them; train_config.json, metrics.json's `train_config` and the checkpoints' `train_config` are to_dict().
TrainResult: what the training job (the API's `train`) returns."""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from model import FeatureConfig, NetConfig
from model.net import POOLINGS
from pipelines.storage import S3Options

WEIGHTINGS = ("balanced", "sqrt", "none")    # --class-weighting, see class_weights()


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Every setting of a training run, as the CLI names them (train_config.json is to_dict()); the fields
    after `verbose` are derived by the driver from the data (0 / empty until then)."""
    features: str = "demo_out/features"
    output: str = "demo_out/train"
    name: str | None = None
    resume: str | None = None
    num_workers: int = 2
    use_gpu: bool = False
    cpus_per_worker: float | None = None
    threads_per_worker: int | None = None
    ingest: str = "auto"
    memory_budget_mb: float = 4096.0
    batch_size: int = 16
    epochs: int = 40
    min_epochs: int = 8
    patience: int = 8
    lr: float = 1e-3
    weight_decay: float = 0.05
    warmup_epochs: float = 1.0
    label_smoothing: float = 0.05
    crop_seconds: float = 3.0
    crops_per_window: float = 2.0
    eval_crop_seconds: float | None = None
    eval_batch_size: int = 4
    time_masks: int = 2
    time_mask_fraction: float = 0.1
    freq_masks: int = 2
    freq_mask_mels: int = 12
    bn_momentum: float = 0.3
    ema_decay: float = 0.0
    val_fraction: float = 0.15
    test_fraction: float = 0.25
    folds: int = 0
    classes: tuple[str, ...] = ()
    channels: tuple[int, ...] = NetConfig.channels
    pooling: str = NetConfig.pooling
    class_weighting: str = "sqrt"
    group_by: str = "file"
    seed: int = 0
    max_failures: int = 2
    endpoint_url: str | None = None
    address: str | None = None
    verbose: bool = False
    crop_frames: int = 0
    eval_crop_frames: int = 0
    steps_per_epoch: int = 0
    class_weights: tuple[float, ...] = ()
    windows: dict = dataclasses.field(default_factory=dict)   # {role: windows}
    files: dict = dataclasses.field(default_factory=dict)     # {role: files}
    ingest_path: str = ""            # "memory" or "stream": what `ingest` chose (see ingest_plan)
    worker_data_mb: float = 0.0      # estimated peak MiB of one worker's in-memory load
    shuffle_buffer: int = 0          # stream: windows in each worker's local shuffle buffer

    def __post_init__(self):
        if isinstance(self.classes, str):                       # "music,speech,noise", as --classes takes it
            object.__setattr__(self, "classes", tuple(c for c in self.classes.split(",") if c))
        if isinstance(self.channels, str):                      # "48,96,192", as --channels takes it
            try:
                object.__setattr__(self, "channels", tuple(int(c) for c in self.channels.split(",")))
            except ValueError:
                raise ValueError(f"channels (--channels) must be three comma-separated integers, got "
                                 f"{self.channels!r}") from None
        if len(self.channels) != 3 or min(self.channels) < 1:
            raise ValueError(f"channels (--channels) must be three integers >= 1 (the seed's three conv blocks), got "
                             f"{self.channels}")
        if self.name and self.resume:
            raise ValueError("give name (--name) or resume (--resume), not both")
        if self.folds == 1 or self.folds < 0:
            raise ValueError(f"folds (--folds) must be 0 (train/test) or >= 2, got {self.folds}")
        if self.num_workers < 1 or self.batch_size < self.num_workers:
            raise ValueError(f"num_workers (--num-workers) must be >= 1 and batch_size (--batch-size) >= num_workers, "
                             f"got {self.num_workers} and {self.batch_size}")
        if self.crop_seconds <= 0 or self.epochs < 1:
            raise ValueError(f"crop_seconds (--crop-seconds) must be > 0 and epochs (--epochs) >= 1, got "
                             f"{self.crop_seconds} and {self.epochs}")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ValueError(f"ema_decay (--ema-decay) must be 0 (off) or in (0, 1), got {self.ema_decay}")
        if self.memory_budget_mb <= 0:
            raise ValueError(f"memory_budget_mb (--memory-budget-mb) must be > 0, got {self.memory_budget_mb}")
        for name, known in (("class_weighting", WEIGHTINGS), ("group_by", ("file", "source")),
                            ("ingest", ("auto", "memory", "stream")), ("pooling", POOLINGS)):
            if getattr(self, name) not in known:
                raise ValueError(f"{name} (--{name.replace('_', '-')}) must be one of {', '.join(known)}, got "
                                 f"{getattr(self, name)!r}")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        unknown = set(d) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ValueError(f"unknown TrainConfig keys: {sorted(unknown)}")
        d = dict(d)
        for k in ("classes", "class_weights", "channels"):  # JSON lists (a string: the CLI's, split in __post_init__)
            if k in d and not isinstance(d[k], str):
                d[k] = tuple(d[k])
        return cls(**d)

    def net_config(self) -> NetConfig:
        return NetConfig(channels=tuple(self.channels), n_classes=len(self.classes), classes=self.classes,
                         pooling=self.pooling)

    def lr_at(self, epoch_pos: float) -> float:
        """Linear warm-up over warmup_epochs, then cosine from lr to lr * 0.01 at the last epoch."""
        if epoch_pos < self.warmup_epochs:
            return self.lr * (epoch_pos + 1e-3) / max(self.warmup_epochs, 1e-3)
        t = (epoch_pos - self.warmup_epochs) / max(1e-9, self.epochs - self.warmup_epochs)
        return self.lr * (0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * min(1.0, t))))


def loop_config(cfg: TrainConfig, fcfg: FeatureConfig, run_uri: str, s3: S3Options | None) -> dict:
    """train_loop's argument (Ray Train's train_loop_config)."""
    return {"train": cfg.to_dict(), "features": fcfg.to_dict(), "run_uri": run_uri, "s3": s3}


def class_weights(counts: np.ndarray, how: str) -> tuple[float, ...]:
    """Loss weight per class from its training windows: `balanced` (n / (K n_k): every class counts alike),
    `sqrt` (n_k^-1/2, scaled to a window-weighted mean of 1: halfway, in log terms, between balanced and the
    data's own frequencies) or `none` (1 each). Balanced weights are the prior the decision then assumes:
    with 3,269 speech, 902 music and 846 noise windows they weigh speech 0.51 and noise 1.98, and the
    robustness run's misses were speech called noise (16.7% of the speech time)."""
    if how == "balanced":
        w = counts.sum() / (len(counts) * counts)
    elif how == "sqrt":
        w = counts ** -0.5
        w = w * counts.sum() / (w * counts).sum()
    elif how == "none":
        w = np.ones_like(counts)
    else:
        raise ValueError(f"unknown class weighting {how!r} (known: {', '.join(WEIGHTINGS)})")
    return tuple(float(x) for x in w)


INGESTS = ("auto", "memory", "stream")


def ingest_plan(c: "TrainConfig", fcfg: FeatureConfig, n_win: dict) -> dict:
    """How each worker gets its windows: {ingest_path, worker_data_mb, shuffle_buffer}.

    The in-memory path holds a worker's share of the uint8 indices (train: its equal streaming_split part;
    val + test: its hash part) and, while it stacks the larger part, that part twice (a list of rows, then
    the array): the estimate is that peak. `auto` keeps it in memory when it fits memory_budget_mb, else
    streams. The stream path's local shuffle buffer takes a quarter of the budget (at least 4 local batches,
    at most the worker's share): it mixes the class-pure runs of featurize's shard files."""
    if c.ingest not in INGESTS:
        raise ValueError(f"unknown --ingest {c.ingest!r} (known: {', '.join(INGESTS)})")
    row = fcfg.n_mels * fcfg.n_frames()
    train_w = n_win["train"] // c.num_workers
    eval_w = -(-(n_win["val"] + n_win["test"]) // c.num_workers)
    peak_mb = (train_w + eval_w + max(train_w, eval_w)) * row / 2**20
    path = c.ingest if c.ingest != "auto" else "memory" if peak_mb <= c.memory_budget_mb else "stream"
    local_batch = max(1, c.batch_size // c.num_workers)
    buffer = min(train_w, max(4 * local_batch, int(c.memory_budget_mb * 2**20 / 4 // row)))
    return {"ingest_path": path, "worker_data_mb": peak_mb, "shuffle_buffer": buffer if path == "stream" else 0}


def resolve(cli: dict, fcfg: FeatureConfig, roles: dict, files: dict, windows: dict,
            total_cpu: float) -> TrainConfig:
    """A run's TrainConfig: the CLI's settings (cli: the parsed options, classes a tuple) and what follows
    from the files of each role ({uri: role}; files {uri: (label, split)}, windows {uri: rows}) and the
    cluster's CPUs: steps per epoch, class weights, crops in frames, CPUs and threads per worker, the ingest
    path. Raises ValueError when a class has no training windows or the workers outnumber them."""
    c = TrainConfig.from_dict(cli)
    by_role = {r: sorted(u for u, x in roles.items() if x == r) for r in ("train", "val", "test")}
    n_win = {r: sum(windows[u] for u in by_role[r]) for r in by_role}
    counts = np.array([sum(windows[u] for u in by_role["train"] if files[u][0] == k) for k in c.classes], float)
    if (counts == 0).any():
        raise ValueError(f"the training files hold no windows of class(es) "
                         f"{[k for k, n in zip(c.classes, counts) if n == 0]}")
    if n_win["train"] < c.num_workers:
        raise ValueError(f"{n_win['train']} training windows are fewer than --num-workers {c.num_workers}")
    hop, sr = fcfg.hop_length, fcfg.sample_rate
    train_per_worker = n_win["train"] // c.num_workers * c.num_workers   # streaming_split(equal=True)
    # whole CPUs where there are enough (fractions like 1.5 strand half CPUs on every node, and a Ray Data
    # task needs a whole one); 0.5 on a 2-core machine, so that one CPU stays free for Ray Data
    cpus = c.cpus_per_worker if c.cpus_per_worker is not None else \
        max(0.5, min(4.0, float((total_cpu - 1) // c.num_workers))) if not c.use_gpu else 1.0
    return dataclasses.replace(
        c, cpus_per_worker=cpus, threads_per_worker=c.threads_per_worker or max(1, int(total_cpu // c.num_workers)),
        crop_frames=max(8, min(fcfg.n_frames(), int(round(c.crop_seconds * sr / hop)))),
        eval_crop_frames=max(8, min(fcfg.n_frames(), int(round((c.eval_crop_seconds or c.crop_seconds) * sr / hop)))),
        steps_per_epoch=max(1, math.ceil(train_per_worker * c.crops_per_window / c.batch_size)),
        class_weights=class_weights(counts, c.class_weighting),
        windows=n_win, files={r: len(v) for r, v in by_role.items()}, **ingest_plan(c, fcfg, n_win))


@dataclasses.dataclass(frozen=True)
class TrainResult:
    """What a training job wrote (the API's `train` returns it): the run's folder, the model and report, and
    the figures of its final line. With folds (cross-validation) the model is one per fold and the figures
    are the folds' mean and spread; cv.json is the report."""
    name: str
    run_dir: str                        # OUT/NAME
    model: str | None                   # OUT/NAME/model.pt, for the labeling job (None with folds)
    report: str                         # OUT/NAME/report/ (metrics.json, plots); with folds OUT/NAME/cv.json
    test_accuracy: float                # on the test windows; with folds the mean over the folds
    test_windows: int                   # with folds summed over the folds
    roc_auc: float | None               # None with folds (cv.json has each fold's)
    wall_seconds: float
    folds: int = 0
    accuracy_std: float | None = None   # with folds: the spread of the folds' accuracies
    fold_accuracies: tuple[float, ...] = ()
    fold_models: tuple[str, ...] = ()   # OUT/NAME/fold-k/model.pt

    def summary_line(self) -> str:
        if self.folds:
            return (f"train: done: {self.folds}-fold CV accuracy {self.test_accuracy:.4f} +- {self.accuracy_std:.4f} "
                    f"({', '.join(f'{x:.3f}' for x in self.fold_accuracies)}) in {self.wall_seconds:.0f} s; models at "
                    f"{self.run_dir}/fold-*/model.pt, report at {self.report}")
        return (f"train: done: test accuracy {self.test_accuracy:.4f} ({self.test_windows} windows, ROC AUC "
                f"{self.roc_auc}) in {self.wall_seconds:.0f} s; model at {self.model}, report at {self.report}")
