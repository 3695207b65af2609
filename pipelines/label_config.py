"""LabelConfig and LabelResult: what the labeling job (pipelines/label.py, the API's `label`) takes and
returns, typed and frozen. The fields are the CLI's options with its defaults (tests/pipelines/test_api.py
holds them equal); the CLI's --csv is `format` with "csv" in it."""

from __future__ import annotations

import dataclasses

from pipelines import exports, storage
from pipelines.featurize_config import as_tuple, check_extensions


def parse_class_prior(value) -> tuple[tuple[str, float], ...]:
    """--class-prior "noise=0.5,music=1" (or pairs) -> (("music", 1.0), ("noise", 0.5)); weights > 0."""
    if isinstance(value, str):
        pairs = []
        for item in filter(None, (s.strip() for s in value.split(","))):
            name, eq, w = item.partition("=")
            try:
                pairs.append((name.strip(), float(w)))
            except ValueError:
                raise ValueError(f"class_prior (--class-prior): {item!r} is not CLASS=WEIGHT") from None
            if not eq or not name.strip():
                raise ValueError(f"class_prior (--class-prior): {item!r} is not CLASS=WEIGHT")
        value = pairs
    out = tuple(sorted((str(k), float(w)) for k, w in value))
    bad = [k for k, w in out if not w > 0]
    if bad or len({k for k, _ in out}) != len(out):
        raise ValueError(f"class_prior (--class-prior): weights must be > 0 and classes named once, got {out}")
    return out


def parse_uris(value: str) -> list[str]:
    """--ensemble "a.pt,s3://b/c.pt" -> ["a.pt", "s3://b/c.pt"] (blanks dropped)."""
    return [u.strip() for u in value.split(",") if u.strip()]


@dataclasses.dataclass(frozen=True, kw_only=True)
class LabelConfig:
    """Every setting of a labeling run, as `pipelines/label.py --help` names them. `model` and `output` are
    required, and one of `input` (a file, folder or s3:// prefix) or `list` (a CSV of URIs). `format` takes
    names or one comma-separated string, as --format does; parquet is always written."""
    input: str | None = None
    list: str | None = None
    extensions: tuple[str, ...] = storage.parse_extensions(storage.EXTENSIONS_ARG)
    model: str
    ensemble: tuple[str, ...] = ()
    output: str
    window_seconds: float | None = None
    hop_seconds: float | None = None
    resolution_seconds: float = 1.0
    min_segment_seconds: float = 2.0
    switch_cost: float = 3.0
    silence_db: float = -55.0
    silence_min_seconds: float = 1.0
    band_limit_hz: float | None = None
    class_prior: tuple[tuple[str, float], ...] = ()
    batch_size: int = 4
    actors: int = 0
    cpus_per_actor: float = 1.0
    threads_per_actor: int = 2
    num_gpus_per_actor: float = 0.0
    decode_cpus: float = 0.5
    plain: bool = False
    format: tuple[str, ...] = ("parquet",)
    plot: str | None = None
    plot_uri: str | None = None
    overwrite: bool = False
    resume: bool = False
    endpoint_url: str | None = None
    address: str | None = None
    verbose: bool = False

    def __post_init__(self):
        object.__setattr__(self, "class_prior", parse_class_prior(self.class_prior))
        object.__setattr__(self, "extensions", as_tuple(self.extensions, storage.parse_extensions))
        object.__setattr__(self, "ensemble", as_tuple(self.ensemble, parse_uris))
        try:   # normalized as the CLI does: known names only, parquet first
            formats = exports.parse_formats(",".join(as_tuple(self.format)))
        except ValueError as e:
            raise ValueError(f"format (--format): {e}") from None
        object.__setattr__(self, "format", tuple(formats))
        check_extensions(self.extensions)
        if self.overwrite and self.resume:
            raise ValueError("overwrite (--overwrite) and resume (--resume) exclude each other")
        if bool(self.input) == bool(self.list):
            raise ValueError("give exactly one of input (--input) or list (--list)")
        if not self.model or not self.output:
            raise ValueError("model (--model) and output (--output) are required")
        if len({self.model, *self.ensemble}) != 1 + len(self.ensemble):
            raise ValueError(f"ensemble (--ensemble) must name checkpoints other than model (--model) and each "
                             f"once, got model {self.model!r}, ensemble {self.ensemble!r}")
        for name in ("window_seconds", "hop_seconds"):
            v = getattr(self, name)
            if v is not None and v <= 0:
                raise ValueError(f"{name} (--{name.replace('_', '-')}) must be > 0, got {v}")
        if self.band_limit_hz is not None and (self.band_limit_hz < 0 or 0 < self.band_limit_hz < 1000):
            raise ValueError(f"band_limit_hz (--band-limit-hz) must be 0 (off) or >= 1000, got {self.band_limit_hz}")
        if self.switch_cost < 0:
            raise ValueError(f"switch_cost (--switch-cost) must be >= 0, got {self.switch_cost}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size (--batch-size) must be >= 1, got {self.batch_size}")

    @property
    def csv(self) -> bool:
        return "csv" in self.format


@dataclasses.dataclass(frozen=True)
class LabelResult:
    """What a labeling run wrote: the locations, this run's figures (its final line) and the totals of
    the output (a --resume run adds to what was there)."""
    output: str                 # OUT
    files_table: str            # OUT/files.parquet: one row per file
    segments_table: str         # OUT/segments.parquet: one row per segment
    marker: str                 # OUT/_SUCCESS.json
    plot: str | None            # the timeline PNG, when asked for
    files: int                  # files this run labeled (errors included)
    errors: int                 # files this run could not decode
    audio_seconds: float        # audio this run labeled
    wall_seconds: float
    total_files: int            # rows of files.parquet
    total_labeled: int          # of them with status ok
    total_segments: int         # rows of segments.parquet

    @property
    def realtime_factor(self) -> float:
        return self.audio_seconds / max(self.wall_seconds, 1e-9)

    def summary_line(self) -> str:
        return (f"label: done: {self.files} files, {self.audio_seconds / 3600:.3f} h of audio, {self.errors} errors, "
                f"{self.wall_seconds:.1f} s wall, {self.realtime_factor:.1f}x realtime -> {self.output} "
                f"({self.total_files} files, {self.total_segments} segments in all)")
