"""FeaturizeConfig and FeaturizeResult: what the featurize job (pipelines/featurize.py, the API's
`featurize`) takes and returns, typed and frozen. The fields are the CLI's options, with its defaults
(tests/pipelines/test_api.py holds them equal)."""

from __future__ import annotations

import dataclasses

from model import FeatureConfig
from pipelines import storage
from pipelines.augment import AugmentConfig

AUGMENT_KINDS = ("band", "phone", "noise", "codec", "eq", "over")   # what --augment draws from by default


def as_tuple(value, split=None) -> tuple:
    """A tuple option given as a tuple, a list, or one string (a path; or, with `split`, a comma-separated
    list parsed by it): a bare string must not be iterated as characters."""
    if isinstance(value, str):
        return tuple(split(value)) if split else (value,)
    return tuple(value)


def check_extensions(exts: tuple[str, ...]) -> None:
    bad = [e for e in exts if not (isinstance(e, str) and e.startswith(".") and len(e) > 1)]
    if bad or not exts:
        raise ValueError(f"extensions (--extensions) must be file extensions with their dot, e.g. ('.wav', "
                         f"'.mp4'), or one string as --extensions takes it; got {exts!r}")


@dataclasses.dataclass(frozen=True, kw_only=True)
class FeaturizeConfig:
    """Every setting of a featurize run, as `pipelines/featurize.py --help` names them. `input` and `manifest`
    take one string or several; with neither, a generated demo set is written next to `output` and
    featurized. `extensions` and `augment_kinds` also take one comma-separated string, as the CLI does."""
    input: tuple[str, ...] = ()
    manifest: tuple[str, ...] = ()
    extensions: tuple[str, ...] = storage.parse_extensions(storage.EXTENSIONS_ARG)
    augment: int = 0
    augment_kinds: tuple[str, ...] = AUGMENT_KINDS
    augment_level_prob: float = 0.0
    output: str = "demo_out/features"
    window_seconds: float = 30.0
    n_mels: int = 128
    band_limit_hz: float = 0.0
    overwrite: bool = False
    resume: bool = False
    repeat: int = 1
    files_per_task: int | None = None
    num_cpus: float = 1.0
    endpoint_url: str | None = None
    address: str | None = None
    verbose: bool = False

    def __post_init__(self):
        for name, split in (("input", None), ("manifest", None), ("extensions", storage.parse_extensions),
                            ("augment_kinds", lambda s: [k for k in s.split(",") if k])):
            object.__setattr__(self, name, as_tuple(getattr(self, name), split))   # frozen: normalized once
        check_extensions(self.extensions)
        if self.overwrite and self.resume:
            raise ValueError("overwrite (--overwrite) and resume (--resume) exclude each other")
        if self.files_per_task is not None and self.files_per_task < 1:
            raise ValueError(f"files_per_task (--files-per-task) must be >= 1, got {self.files_per_task}")
        if self.augment < 0:
            raise ValueError(f"augment (--augment) must be >= 0, got {self.augment}")
        if not self.output:
            raise ValueError("output (--output) must name a folder or s3:// prefix")
        self.augment_config()                                   # raises ValueError naming bad kinds
        self.feature_config()                                   # raises ValueError on a bad n_mels

    def feature_config(self) -> FeatureConfig:
        return FeatureConfig(window_seconds=self.window_seconds, n_mels=self.n_mels, band_limit_hz=self.band_limit_hz)

    def augment_config(self) -> AugmentConfig:
        return AugmentConfig(variants=self.augment, kinds=self.augment_kinds, level_prob=self.augment_level_prob)


@dataclasses.dataclass(frozen=True)
class FeaturizeResult:
    """What a featurize run wrote: the locations, and the figures of its final line (this run's files,
    windows, hours and wall time; `errors` counts every row of errors.parquet)."""
    output: str                 # OUT
    inputs: tuple[str, ...]     # the inputs listed (the generated demo folder when none was given)
    shards: str | None          # OUT/shards/<run>: this run's shards (None when it wrote no window)
    errors_table: str           # OUT/errors.parquet: uri, error of the files that did not decode
    marker: str                 # OUT/_SUCCESS.json: the finished runs and the summary
    files: int
    windows: int
    audio_hours: float
    errors: int
    wall_seconds: float

    @property
    def clips_per_second(self) -> float:
        return self.windows / self.wall_seconds if self.wall_seconds else 0.0

    def summary_line(self) -> str:
        return (f"featurize: done: {self.files} files, {self.windows} windows, {self.audio_hours:.3f} h of audio, "
                f"{self.errors} errors, {self.wall_seconds:.1f} s wall, {self.clips_per_second:.2f} clips/s "
                f"-> {self.output}")
