"""featurize's CPU stage, plain functions run by Ray tasks: a file (and its --augment copies under archive
conditions, pipelines/augment.py) -> one row per window of uint8 colormap indices, streamed window by
window through pipelines/windows.py (the labeling job's own windows). featurize_files is the Ray Data UDF."""

from __future__ import annotations

import bisect
import json
import uuid

import numpy as np
import pyarrow as pa

from model import FeatureConfig
from pipelines import storage
from pipelines.augment import AugmentConfig, augment, band_limit, level_steps, montage, rng_for
from pipelines.shards import ERROR_SCHEMA, FEATURE_SCHEMA
from pipelines.storage import S3Options
from pipelines.windows import iter_windows, window_index


MONTAGE_OTHERS = 7   # other recordings a montage draws its pieces from (besides the file's own)


def copy_plans(item: dict, aug: AugmentConfig, banks: dict) -> list[tuple[int, str, str | tuple | None]]:
    """(copy number, condition, file(s) to mix in) of each augmented copy of a labeled file outside the test
    split, drawn from (uri, copy number): reruns and --resume agree. A montage's files share the item's
    label and source (banks["montage"], inputs.mixing_banks)."""
    if not aug.variants or item["label"] is None or item["split"] == "test":
        return []
    plans = []
    for v in range(aug.variants):
        rng = rng_for(item["uri"], v, aug.seed)
        pool = [k for k in aug.kinds if k != "over" or (item["label"] == "speech" and banks["music"])]
        kind = str(rng.choice(pool))
        if kind == "montage":
            bank = banks.get("montage", {}).get(f"{item['label']}/{item.get('source')}", [])
            n, own = _without(bank, item["uri"])
            pick = rng.choice(n, min(MONTAGE_OTHERS, n), replace=False) if n else []
            plans.append((v, kind, tuple(bank[int(i) + (i >= own)] for i in pick)))
        elif kind in ("noise", "over"):
            bank = banks["noise" if kind == "noise" else "music"]
            n, own = _without(bank, item["uri"])
            plans.append((v, kind, bank[(i := int(rng.integers(n))) + (i >= own)] if n else None))
        else:
            plans.append((v, kind, None))
    return plans


def _without(bank: list[str], uri: str) -> tuple[int, int]:
    """(how many files the sorted `bank` holds besides `uri`, uri's index or len(bank)): the i-th other file is
    bank[i + (i >= index)], the draws a copy of the bank without uri would give, without a copy of the bank
    per file and per copy (which is quadratic in the files of one source)."""
    j = bisect.bisect_left(bank, uri)
    return (len(bank) - 1, j) if j < len(bank) and bank[j] == uri else (len(bank), len(bank))


def head_of(uri: str | None, cfg: FeatureConfig, s3: S3Options | None, seconds: float) -> np.ndarray | None:
    """The first `seconds` of a file to mix in (streamed: a long noise file is never decoded whole); None
    when it does not decode (generated noise is used instead; the file has its own error row)."""
    if uri is None:
        return None
    parts, n = [], 0
    try:
        for _, block, _ in storage.iter_decoded_blocks(uri, min(30.0, seconds), cfg.sample_rate, s3):
            parts.append(block)
            n += len(block)
            if n >= seconds * cfg.sample_rate:
                break
    except storage.DecodeError:
        return None
    return np.concatenate(parts)[: int(seconds * cfg.sample_rate)] if parts else None


def file_rows(item: dict, cfg: FeatureConfig, aug: AugmentConfig, banks: dict, s3: S3Options | None):
    """Yield (augment tag, Window, uint8 index) for every window of a file and of its augmented copies,
    streamed window by window (pipelines/windows.py: the same windows and indices as the label job)."""
    plans = copy_plans(item, aug, banks)
    others = {v: [head_of(u, cfg, s3, cfg.window_seconds) for u in o] if isinstance(o, tuple)
              else head_of(o, cfg, s3, 4 * cfg.window_seconds) for v, _, o in plans}
    frames = cfg.n_frames()
    for i, w in enumerate(iter_windows(item["uri"], cfg, None, s3)):
        yield "", w, window_index(w.samples, cfg, frames)
        for v, kind, _ in plans:
            rng, lvl = rng_for(item["uri"], v, aug.seed, i), rng_for(item["uri"], v, aug.seed, i, "level")
            x, tag = w.samples, f"{v + 1}:{kind}"                             # "1:band", "2:codec+level"
            if aug.level_prob and lvl.random() < aug.level_prob:
                x, gains = level_steps(x, cfg.sample_rate, lvl, aug.level_db)
                tag += "+level" if len(gains) > 1 else ""                # under 2 s: nothing to step
            if kind == "montage":                                         # a full window, whatever w's length
                y, _ = montage(x[:w.n], cfg.sample_rate, others[v], rng, cfg.window_samples)
            else:
                y, _ = augment(x, cfg.sample_rate, kind, rng, others[v], aug)
            if cfg.band_limit_hz and 2 * cfg.band_limit_hz < cfg.sample_rate:   # the damage may add highs back
                y = band_limit(y, cfg.sample_rate, int(round(2 * cfg.band_limit_hz)))
            yield tag, w._replace(n=len(y)) if kind == "montage" else w, window_index(y, cfg, frames)


def featurize_files(batch: pa.Table, cfg_dict: dict, aug_dict: dict, banks: dict, s3: S3Options | None,
                    errors_dir: str, rows_per_yield: int = 64):
    """Ray Data UDF (generator): a batch of {uri, label, split, source} -> one row per window (and per
    augmented copy), yielded every rows_per_yield rows so that an hours-long file streams. Decode errors
    are caught per file and written to errors_dir, so one bad file never takes the good ones in its block
    down (a file that breaks after its first rows_per_yield rows keeps those rows and gets an error row)."""
    import torch

    torch.set_num_threads(1)  # one task per CPU: no oversubscription
    cfg, aug = FeatureConfig.from_dict(cfg_dict), AugmentConfig.from_dict(aug_dict)
    schema = FEATURE_SCHEMA.with_metadata({"feature_config": json.dumps(cfg_dict)})
    rows = {name: [] for name in FEATURE_SCHEMA.names}
    errors = []

    def flush():
        t = pa.table(rows, schema=schema)
        for v in rows.values():
            v.clear()
        return t

    for item in batch.to_pylist():  # pyarrow rows keep None as None (a numpy batch turned it into "nan")
        uri, mark = item["uri"], len(rows["uri"])
        try:
            for tag, w, index in file_rows(item, cfg, aug, banks, s3):
                for k in ("uri", "label", "split", "source"):
                    rows[k].append(item[k])
                for k, v in (("augment", tag), ("window_start", w.start), ("window_duration", w.n / cfg.sample_rate),
                             ("sample_rate", w.info.sample_rate), ("channels", w.info.channels),
                             ("n_mels", index.shape[0]), ("n_frames", index.shape[1]), ("index", index.tobytes())):
                    rows[k].append(v)
                if len(rows["uri"]) >= rows_per_yield:
                    yield flush()
                    mark = 0
        except storage.DecodeError as e:  # a broken file; storage retried transient I/O, the rest is a bug: raise
            for v in rows.values():
                del v[mark:]                                  # this file's rows not yet yielded
            errors.append((uri, str(e)))
    if errors:
        err = pa.table({"uri": [u for u, _ in errors], "error": [m for _, m in errors]}, schema=ERROR_SCHEMA)
        storage.write_table(storage.join(errors_dir, f"{uuid.uuid4().hex}.parquet"), err, s3)
    if rows["uri"]:
        yield flush()

