"""featurize: audio (folders, s3:// prefixes, manifest CSVs) -> Parquet shards of uint8 colormap indices.

Ray Data lists nothing itself: the driver lists the files (pipelines/inputs.py: several inputs merged, each
file with its label, split and source), then Ray maps stream-decode + window (pipelines/windows.py, the
labeling job's own windows) + featurize over them in parallel, with --augment copies under archive
conditions (pipelines/augment.py), and writes zstd Parquet; nothing runs until the write.

    # embedded default: generate demo audio, featurize it on a local Ray
    python pipelines/featurize.py
    # GTZAN + the corpus, 2 augmented copies of every training file
    python pipelines/featurize.py --input ../shared/data/music_speech --manifest ../shared/data/corpus/manifest.csv \\
        --output features --augment 2
    # a folder or bucket, on a cluster
    ray job submit --address http://HEAD:8265 --working-dir . -- \\
        python pipelines/featurize.py --input s3://bucket/audio --output s3://bucket/features

Output (readable with plain pyarrow/pandas, see README "Feature shards"):
    OUT/shards/<run>/*.parquet   one row per window (schema: FEATURE_SCHEMA)
    OUT/errors.parquet           uri, error: the files that could not be decoded
    OUT/feature_config.json      the FeatureConfig (also in each shard's schema metadata)
    OUT/_SUCCESS.json            written last: the finished runs and the summary; readers need it
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import uuid

if __package__ in (None, ""):  # `python pipelines/featurize.py`: make the repository root importable
    _ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    sys.path.insert(0, _ROOT)
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [_ROOT, os.environ.get("PYTHONPATH")]))

import numpy as np  # noqa: E402
import pyarrow as pa  # noqa: E402
import pyarrow.compute as pc  # noqa: E402

from model import FeatureConfig  # noqa: E402
from pipelines import console, storage  # noqa: E402
from pipelines.augment import AugmentConfig, augment, rng_for  # noqa: E402
from pipelines.windows import iter_windows, window_index  # noqa: E402
from pipelines.shards import (ERROR_SCHEMA, FEATURE_SCHEMA, audio_seconds, clear_unfinished,  # noqa: E402,F401
                             finished_shards, marker_uri, read_rows, totals)
from pipelines.inputs import list_items, mixing_banks  # noqa: E402
from pipelines.storage import S3Options  # noqa: E402



# ------------------------------------------------------------------------------------------------
# the CPU stage: plain functions

def copy_plans(item: dict, aug: AugmentConfig, banks: dict) -> list[tuple[int, str, str | None]]:
    """(copy number, condition, file to mix in) of each augmented copy of a labeled file outside the test
    split, drawn from (uri, copy number): reruns and --resume agree."""
    if not aug.variants or item["label"] is None or item["split"] == "test":
        return []
    plans = []
    for v in range(aug.variants):
        rng = rng_for(item["uri"], v, aug.seed)
        pool = [k for k in aug.kinds if k != "over" or (item["label"] == "speech" and banks["music"])]
        kind = str(rng.choice(pool))
        bank = [u for u in banks["noise" if kind == "noise" else "music"] if u != item["uri"]] \
            if kind in ("noise", "over") else []
        plans.append((v, kind, bank[int(rng.integers(len(bank)))] if bank else None))
    return plans


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
    others = {v: head_of(o, cfg, s3, 4 * cfg.window_seconds) for v, _, o in plans}
    frames = cfg.n_frames()
    for i, w in enumerate(iter_windows(item["uri"], cfg, None, s3)):
        yield "", w, window_index(w.samples, cfg, frames)
        for v, kind, _ in plans:
            rng = rng_for(item["uri"], v, aug.seed, i)
            y, _ = augment(w.samples, cfg.sample_rate, kind, rng, others[v], aug)
            yield f"{v + 1}:{kind}", w, window_index(y, cfg, frames)             # "1:band", "2:codec"


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


# ------------------------------------------------------------------------------------------------

def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="Featurize audio into Parquet shards of uint8 magma indices (one row per window) on Ray.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--input", action="append", default=[],
                   help="folder or s3:// prefix of audio or video (any format libsndfile or FFmpeg reads, see "
                        "--extensions), searched recursively; labels/splits come from "
                        ".../<split>/<music|speech|noise>/file paths; the folder's name is the files' source. "
                        "Repeat to merge several inputs. "
                        "Default (no --input, no --manifest): generate a demo set into <output>/../demo_audio")
    p.add_argument("--manifest", action="append", default=[],
                   help="CSV with a header naming path,label[,split][,source] columns (or headerless "
                        "path,label[,split]); repeatable, and combinable with --input")
    p.add_argument("--extensions", type=storage.parse_extensions, default=storage.EXTENSIONS_ARG,
                   help=storage.EXTENSIONS_HELP)
    p.add_argument("--augment", type=int, default=0, metavar="N",
                   help="N augmented copies of every labeled file outside the test split, each under one "
                        "archive condition drawn per file: band limit (8/11/16 kHz), telephone, noise from the "
                        "inputs' noise files at 0-20 dB SNR, MP3/Ogg at a low bitrate, gain/EQ, and speech over "
                        "the inputs' music (label speech)")
    p.add_argument("--augment-kinds", default="band,phone,noise,codec,eq,over",
                   help="the conditions --augment draws from")
    p.add_argument("--output", default="demo_out/features", help="output folder or s3:// prefix")
    p.add_argument("--window-seconds", type=float, default=30.0, help="window length (the seed's clip is 30 s)")
    p.add_argument("--n-mels", type=int, default=128)
    p.add_argument("--overwrite", action="store_true", help="replace a finished output")
    p.add_argument("--resume", action="store_true", help="keep a finished output and featurize only new files")
    p.add_argument("--repeat", type=int, default=1, help="list the input N times over (benchmarking)")
    p.add_argument("--files-per-task", type=int,
                   help="files per Ray task (= per Parquet shard); default: the files spread over 4 tasks per "
                        "CPU, at most 32 (a 30 s clip takes ~25 ms, Ray Data ~70 ms to dispatch a task here)")
    p.add_argument("--num-cpus", type=float, default=1.0, help="CPUs reserved per featurize task")
    p.add_argument("--endpoint-url", help="S3-compatible endpoint (default: $AWS_ENDPOINT_URL)")
    p.add_argument("--address", help="Ray cluster address (default: $RAY_ADDRESS, else a local Ray)")
    console.add_verbose(p)
    a = p.parse_args(argv)
    if a.overwrite and a.resume:
        p.error("--overwrite and --resume exclude each other")
    if a.files_per_task is not None and a.files_per_task < 1:
        p.error("--files-per-task must be >= 1")
    if a.augment < 0:
        p.error("--augment must be >= 0")
    try:
        a.augment_config = AugmentConfig(variants=a.augment, kinds=tuple(k for k in a.augment_kinds.split(",") if k))
    except ValueError as e:
        p.error(str(e))
    return a


def main(argv=None) -> int:
    a = parse_args(argv)
    s3 = S3Options.from_env(a.endpoint_url)
    cfg = FeatureConfig(window_seconds=a.window_seconds, n_mels=a.n_mels)
    out = a.output
    try:
        storage.check_output(out, s3)
        if not a.input and not a.manifest:
            from pipelines.demo import write_demo

            demo = storage.join(out.rstrip("/"), "..", "demo_audio") if not storage.is_s3(out) else storage.join(out, "demo_audio")
            a.input = [os.path.normpath(demo) if not storage.is_s3(out) else demo]
            write_demo(a.input[0], per_class=8, seconds=30.0, s3=s3)
            print(f"featurize: no --input given: generated a demo set in {a.input[0]}")
        items = list_items(a.input, a.manifest, s3, a.extensions)
    except (storage.StorageError, ValueError) as e:
        print(f"featurize: error: {e}", file=sys.stderr)
        return 2
    if not items:
        print(f"featurize: error: no audio files (of --extensions {','.join(a.extensions)}) found in {', '.join(a.input + a.manifest)}",
              file=sys.stderr)
        return 2
    banks = mixing_banks(items)

    # Reruns never destroy finished output: refuse, resume, or (explicitly) overwrite.
    previous_runs = []
    if storage.exists(marker_uri(out), s3):
        done = storage.read_json(marker_uri(out), s3)
        if a.overwrite:
            for sub in ("shards", "errors", "errors.parquet", "feature_config.json", "_SUCCESS.json"):
                storage.remove(storage.join(out, sub), s3)
        elif a.resume:
            if done["feature_config"] != cfg.to_dict() or done.get("augment", AugmentConfig().to_dict()) != a.augment_config.to_dict():
                print(f"featurize: error: {out} was featurized with another config: {done['feature_config']}, "
                      f"augment {done.get('augment')}", file=sys.stderr)
                return 2
            previous_runs = list(done["runs"])
            clear_unfinished(out, previous_runs, s3)      # shards of a --resume that died: never listed, never read
            have = set(read_rows(out, s3, ["uri"]).column("uri").to_pylist())
            items = [it for it in items if it["uri"] not in have]
            print(f"featurize: --resume: {len(have)} files already featurized, {len(items)} to go")
        else:
            print(f"featurize: error: {out} already holds a finished run ({done.get('files')} files); "
                  "pass --resume to add new files or --overwrite to replace it", file=sys.stderr)
            return 2
    else:  # leftovers of a run that died: never marked finished, so not output; clear them
        clear_unfinished(out, [], s3)
    items = items * max(1, a.repeat)

    import ray
    from ray.data import TaskPoolStrategy

    if not ray.is_initialized():  # tests and notebooks may have started Ray already
        console.init_ray(a.address or os.environ.get("RAY_ADDRESS") or "local", a.verbose)  # "local": never attach to a cluster someone else started here
    t0 = time.time()
    run = time.strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6]
    run_dir, errors_dir = storage.join(out, "shards", run), storage.join(out, "errors", run)
    n_cpus = max(1, int(ray.cluster_resources().get("CPU", 1)))
    print(f"featurize: {len(items)} files -> {run_dir} on {n_cpus} CPUs (window {cfg.window_seconds:g} s, "
          f"{cfg.n_mels} mels, {a.augment} augmented copies per labeled file)", flush=True)

    if items:
        per_task = a.files_per_task or max(1, min(32, -(-len(items) // (4 * n_cpus))))
        ds = console.quiet(ray.data.from_items(items, override_num_blocks=-(-len(items) // per_task)), a.verbose)
        # Ray Data reserves part of the cluster for each operator by default; with one map operator on a
        # small cluster that left one task running at a time (measured: 2 CPUs ran no faster than 1).
        # Set on this dataset's own context (its successors inherit it), not the process-wide one.
        ds.context.op_resource_reservation_enabled = False
        ds = ds.map_batches(featurize_files, batch_size=per_task, batch_format="pyarrow",
                            fn_kwargs={"cfg_dict": cfg.to_dict(), "aug_dict": a.augment_config.to_dict(),
                                       "banks": banks, "s3": s3, "errors_dir": errors_dir},
                            compute=TaskPoolStrategy(), num_cpus=a.num_cpus)  # Ray Data's default scheduling already SPREADs tasks over the nodes
        # no min_rows_per_file: Ray would bundle the (one-row-per-file) input blocks up to it and run
        # everything in one task; shard size is set by the files per task instead
        progress, written = console.Progress("featurize", len(items)), console.WrittenFiles(run_dir, errors_dir, s3)
        with console.polling(lambda: progress.update(*written.poll()), 1.0 if progress.tty else 10.0):
            ds.write_parquet(storage.arrow_path(run_dir), filesystem=storage.arrow_fs(out, s3), compression="zstd")
        progress.update(*written.poll())
        progress.close()
    wall = time.time() - t0

    # Summary from what was written (cheap column reads), then the marker, last.
    rows = storage.read_table(run_dir, s3, ["uri", "window_start", "window_duration", "augment"]) \
        if storage.exists(run_dir, s3) else None
    n_windows = rows.num_rows if rows is not None and rows.num_rows else 0
    n_files = len(set(rows.column("uri").to_pylist())) if n_windows else 0
    seconds = audio_seconds(rows) if n_windows else 0.0
    errs = storage.read_table(errors_dir, s3) if storage.exists(errors_dir, s3) else ERROR_SCHEMA.empty_table()
    if previous_runs and storage.exists(storage.join(out, "errors.parquet"), s3):
        old = storage.read_table(storage.join(out, "errors.parquet"), s3)
        retried = set(it["uri"] for it in items)
        old = old.filter(pc.invert(pc.is_in(old.column("uri"), pa.array(list(retried), pa.string()))))
        errs = pa.concat_tables([old, errs.select(["uri", "error"]).cast(ERROR_SCHEMA)])
    storage.write_table(storage.join(out, "errors.parquet"), errs.cast(ERROR_SCHEMA), s3)
    n_errors = errs.num_rows
    if n_files == 0 and not previous_runs:
        print(f"featurize: error: no file could be featurized ({n_errors} errors, see "
              f"{storage.join(out, 'errors.parquet')})", file=sys.stderr)
        return 1
    runs = previous_runs + ([run] if n_windows else [])
    this_run = {"files": n_files, "windows": n_windows, "audio_hours": seconds / 3600, "wall_seconds": wall,
                "clips_per_second": n_windows / wall if wall else 0.0}
    summary = {"runs": runs, "feature_config": cfg.to_dict(), "augment": a.augment_config.to_dict(),
               **totals(out, runs, s3), "errors": n_errors, "this_run": this_run, "schema": FEATURE_SCHEMA.names}
    storage.write_json(storage.join(out, "feature_config.json"), cfg.to_dict(), s3)
    storage.write_json(marker_uri(out), summary, s3)
    print(f"featurize: done: {n_files} files, {n_windows} windows, {seconds / 3600:.3f} h of audio, "
          f"{n_errors} errors, {wall:.1f} s wall, {n_windows / wall:.2f} clips/s -> {out}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
