"""What a labeling run does, before Ray starts: the checkpoint and its windows, the files to label, and what
an earlier run left in the output (refused, resumed, or overwritten: a rerun never destroys finished output)."""

from __future__ import annotations

import dataclasses
import hashlib
import io

import pyarrow.compute as pc

from model import FeatureConfig
from model.segments import SILENCE
from pipelines import exports, storage
from pipelines.errors import JobError
from pipelines.label_config import LabelConfig
from pipelines.label_output import marker_uri, read_output
from pipelines.storage import S3Options


@dataclasses.dataclass(frozen=True)
class Plan:
    """What a run labels and with what: the checkpoint, its windows, the files to do and the settings
    recorded in label_config.json."""
    checkpoint: bytes
    ensemble: tuple[bytes, ...]   # --ensemble's checkpoints, averaged with `checkpoint`
    classes: list[str]          # the checkpoint's classes + silence: what the outputs may say
    features: FeatureConfig     # the checkpoint's, with --window-seconds
    hop: float
    uris: list[str]
    settings: dict


def read_checkpoint(uri: str, s3: S3Options):
    """-> (its bytes, its network, its FeatureConfig); ValueError/StorageError naming a bad one."""
    from model import load_checkpoint

    storage.check_input(uri, s3)
    data = storage.read_bytes(uri, s3)
    try:
        net, fcfg, _ = load_checkpoint(io.BytesIO(data))
    except Exception as e:
        raise ValueError(f"{uri} is not a usable checkpoint: {type(e).__name__}: {e}") from e
    return data, net, fcfg


def read_ensemble(cfg: LabelConfig, net, base_cfg: FeatureConfig, s3: S3Options) -> tuple[bytes, ...]:
    """--ensemble's checkpoints; each must have --model's classes and features (its probabilities are averaged
    with --model's, window by window)."""
    out = []
    for uri in cfg.ensemble:
        data, other, fcfg = read_checkpoint(uri, s3)
        if list(other.cfg.classes) != list(net.cfg.classes) or fcfg.to_dict() != base_cfg.to_dict():
            raise ValueError(f"--ensemble {uri} does not match --model {cfg.model}: classes {list(other.cfg.classes)} "
                             f"against {list(net.cfg.classes)}, features {fcfg.to_dict()} against {base_cfg.to_dict()}")
        out.append(data)
    return tuple(out)


def plan(cfg: LabelConfig, s3: S3Options) -> Plan:
    """Loads the checkpoint(s) and lists the input; raises JobError naming a bad model, input or output."""
    try:
        ckpt_bytes, net, base_cfg = read_checkpoint(cfg.model, s3)
        ensemble = read_ensemble(cfg, net, base_cfg, s3)
        fcfg = dataclasses.replace(base_cfg, window_seconds=cfg.window_seconds or base_cfg.window_seconds,
                                   band_limit_hz=base_cfg.band_limit_hz if cfg.band_limit_hz is None else cfg.band_limit_hz)
        storage.check_output(cfg.output, s3)
        uris = [r["uri"] for r in storage.read_manifest(cfg.list, s3)] if cfg.list else \
            storage.list_audio(cfg.input, s3, cfg.extensions)
    except (storage.StorageError, ValueError) as e:
        raise JobError(str(e)) from e
    if not uris:
        raise JobError(f"no audio files (of --extensions {','.join(cfg.extensions)}) found in {cfg.input or cfg.list}")
    classes, hop = [*net.cfg.classes, SILENCE], cfg.hop_seconds or fcfg.window_seconds
    unknown = [k for k, _ in cfg.class_prior if k not in net.cfg.classes]
    if unknown:
        raise JobError(f"--class-prior names {unknown}, which {cfg.model} does not have (its classes: "
                       f"{', '.join(net.cfg.classes)})")
    settings = {"model": cfg.model, "model_sha256": hashlib.sha256(ckpt_bytes).hexdigest(), "classes": classes,
                "feature_config": fcfg.to_dict(), "hop_seconds": hop, "resolution_seconds": cfg.resolution_seconds,
                "min_segment_seconds": cfg.min_segment_seconds, "switch_cost": cfg.switch_cost, "silence_db": cfg.silence_db,
                "silence_min_seconds": cfg.silence_min_seconds, "class_prior": dict(cfg.class_prior)}
    if ensemble:   # only then, so that outputs of single models, before and after --ensemble existed, compare equal
        settings.update(ensemble=list(cfg.ensemble), ensemble_sha256=[hashlib.sha256(b).hexdigest() for b in ensemble])
    return Plan(ckpt_bytes, ensemble, classes, fcfg, hop, uris, settings)


def comparable(key: str, value):
    """A setting read back from an output's label_config.json, with FeatureConfig fields added since it was
    written (band_limit_hz), and class_prior and switch_cost, at what a run before them did."""
    if key == "feature_config" and isinstance(value, dict):
        return FeatureConfig.from_dict(value).to_dict()
    if key == "class_prior" and value is None:
        return {}
    if key == "switch_cost" and value is None:   # written before the smoothing existed: labeled without it
        return 0.0
    return value


def files_to_do(cfg: LabelConfig, p: Plan, s3: S3Options) -> list[str]:
    """Reruns never destroy finished output: refuse (JobError), resume (-> the files not labeled ok yet), or
    (explicitly) overwrite. Writes label_config.json."""
    out = cfg.output
    cfg_uri, finished = storage.join(out, "label_config.json"), storage.exists(marker_uri(out), s3)
    have_ok = set()
    if cfg.overwrite or not cfg.resume:
        if finished and not cfg.overwrite:
            done = storage.read_json(marker_uri(out), s3)
            raise JobError(f"{out} already holds a finished labeling run ({done.get('files')} files); pass "
                           "--resume to label only new files or --overwrite to replace it")
        for sub in ("parts", "files.parquet", "segments.parquet", "files.csv", "segments.csv", "_SUCCESS.json",
                    *exports.OUTPUTS):
            storage.remove(storage.join(out, sub), s3)  # --overwrite, or leftovers of a run that died
    elif storage.exists(cfg_uri, s3):
        old = storage.read_json(cfg_uri, s3)
        keys = {*p.settings, "ensemble_sha256"} - {"model", "ensemble"}   # locations may move; sha256s must match
        if {k: comparable(k, old.get(k)) for k in keys} != {k: p.settings.get(k) for k in keys}:
            raise JobError(f"{out} was labeled with another model or settings ({old}); use another --output "
                           "or --overwrite")
        files, _ = read_output(out, s3, p.classes)
        have_ok = set(files.filter(pc.equal(files.column("status"), "ok")).column("uri").to_pylist())
    storage.remove_temp_files(out, s3)                   # what a crash left mid-write: never read
    storage.write_json(cfg_uri, p.settings, s3)
    todo = [u for u in p.uris if u not in have_ok]
    if cfg.resume:
        print(f"label: --resume: {len(p.uris) - len(todo)} files already labeled, {len(todo)} to go", flush=True)
    return todo
