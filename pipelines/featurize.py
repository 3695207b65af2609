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
    # from Python: the same run as a function (pipelines/api.py)
    featurize(FeaturizeConfig(input="audio", output="features", augment=2))   # -> FeaturizeResult

Output (readable with plain pyarrow/pandas, see README "Feature shards"):
    OUT/shards/<run>/*.parquet   one row per window (schema: FEATURE_SCHEMA)
    OUT/errors.parquet           uri, error: the files that could not be decoded
    OUT/feature_config.json      the FeatureConfig (also in each shard's schema metadata)
    OUT/_SUCCESS.json            written last: the finished runs and the summary; readers need it
"""
from __future__ import annotations

import argparse
import os
import sys
import time
import uuid

if __package__ in (None, ""):  # `python pipelines/featurize.py`: make the repository root importable
    _ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    sys.path.insert(0, _ROOT)
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [_ROOT, os.environ.get("PYTHONPATH")]))

import pyarrow as pa  # noqa: E402
import pyarrow.compute as pc  # noqa: E402

from model import FeatureConfig  # noqa: E402
from pipelines import console, storage  # noqa: E402
from pipelines.augment import AugmentConfig  # noqa: E402
from pipelines.errors import JobError, run_cli  # noqa: E402
from pipelines.featurize_config import AUGMENT_KINDS, FeaturizeConfig, FeaturizeResult  # noqa: E402
# the CPU stage (Ray pickles it by reference to its module, also when this file runs as __main__)
from pipelines.featurize_rows import copy_plans, featurize_files, file_rows, head_of  # noqa: E402,F401
from pipelines.inputs import list_items, mixing_banks  # noqa: E402
from pipelines.resources import alive_nodes, check_fit  # noqa: E402
from pipelines.shards import (ERROR_SCHEMA, FEATURE_SCHEMA, audio_seconds, clear_unfinished,  # noqa: E402,F401
                             finished_shards, marker_uri, read_rows, totals)
from pipelines.storage import S3Options  # noqa: E402


# ------------------------------------------------------------------------------------------------
# the command line

def parser() -> argparse.ArgumentParser:
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
    p.add_argument("--augment-kinds", default=",".join(AUGMENT_KINDS), help="the conditions --augment draws from; "
                   "also known (not drawn by default): speed (played 0.7-1.4x as fast, tempo and pitch "
                   "together), montage (a full window of 2-8 s pieces of the file and of other files of its label "
                   "and source, each at its own level)")
    p.add_argument("--augment-level-prob", type=float, default=0.0, metavar="P",
                   help="the share of augmented copies whose windows also get level steps (2-4 stretches of >= 1 s, "
                        "all but one lowered by 0-30 dB) before their condition: a quiet voice after a loud "
                        "record shares one window's normalization with it (0, the default: off; what 0.5 bought "
                        "and cost: README, Real archives)")
    p.add_argument("--output", default="demo_out/features", help="output folder or s3:// prefix")
    p.add_argument("--window-seconds", type=float, default=30.0, help="window length (the seed's clip is 30 s)")
    p.add_argument("--n-mels", type=int, default=128)
    p.add_argument("--band-limit-hz", type=float, default=0.0,
                   help="band-limit every file (and every augmented copy, after its damage) to this before the "
                        "features, as a recording of that bandwidth would be; stored in the feature config, so "
                        "the label job does the same by default; 0: off")
    p.add_argument("--overwrite", action="store_true", help="replace a finished output")
    p.add_argument("--resume", action="store_true", help="keep a finished output and featurize only new files")
    p.add_argument("--repeat", type=int, default=1, help="list the input N times over (benchmarking)")
    p.add_argument("--files-per-task", type=int,
                   help="files per Ray task (= per Parquet shard); default: the files spread over 4 tasks per "
                        "CPU, at most 32 (a 30 s clip takes ~25 ms, Ray Data ~70 ms to dispatch a task here)")
    p.add_argument("--num-cpus", type=float, default=1.0, help="CPUs reserved per featurize task")
    console.add_cluster_options(p)
    return p


def config_of(a: argparse.Namespace) -> FeaturizeConfig:
    """The parsed options -> the run's FeaturizeConfig (raises ValueError naming a bad option)."""
    return FeaturizeConfig(**vars(a))


def parse_args(argv=None) -> argparse.Namespace:
    return console.parse_checked(parser(), argv, config_of)


# ------------------------------------------------------------------------------------------------
# the driver

def list_inputs(cfg: FeaturizeConfig, s3: S3Options) -> tuple[tuple[str, ...], list[dict]]:
    """-> (the inputs, their files as {uri, label, split, source}); with no input and no manifest, a demo
    set is generated next to the output first. Raises JobError naming a bad location or an empty input."""
    out, inputs = cfg.output, cfg.input
    try:
        storage.check_output(out, s3)
        if not inputs and not cfg.manifest:
            from pipelines.demo import write_demo

            demo = storage.join(out, "demo_audio") if storage.is_s3(out) else \
                os.path.normpath(storage.join(out.rstrip("/"), "..", "demo_audio"))
            inputs = (demo,)
            write_demo(demo, per_class=8, seconds=30.0, s3=s3)
            print(f"featurize: no --input given: generated a demo set in {demo}")
        items = list_items(list(inputs), list(cfg.manifest), s3, cfg.extensions)
    except (storage.StorageError, ValueError) as e:
        raise JobError(str(e)) from e
    if not items:
        raise JobError(f"no audio files (of --extensions {','.join(cfg.extensions)}) found in "
                       f"{', '.join(inputs + cfg.manifest)}")
    return inputs, items


def previous_output(cfg: FeaturizeConfig, items: list[dict], s3: S3Options) -> tuple[list[dict], list[str]]:
    """Reruns never destroy finished output: refuse (JobError), resume (-> the files not yet featurized and
    the finished runs), or (explicitly) overwrite. Leftovers of a run that died are cleared."""
    out = cfg.output
    if not storage.exists(marker_uri(out), s3):
        clear_unfinished(out, [], s3)          # never marked finished, so not output
        return items, []
    done = storage.read_json(marker_uri(out), s3)
    if cfg.overwrite:
        for sub in ("shards", "errors", "errors.parquet", "feature_config.json", "_SUCCESS.json"):
            storage.remove(storage.join(out, sub), s3)
        return items, []
    if not cfg.resume:
        raise JobError(f"{out} already holds a finished run ({done.get('files')} files); "
                       "pass --resume to add new files or --overwrite to replace it")
    if done["feature_config"] != cfg.feature_config().to_dict() or \
            done.get("augment", AugmentConfig().to_dict()) != cfg.augment_config().to_dict():
        raise JobError(f"{out} was featurized with another config: {done['feature_config']}, "
                       f"augment {done.get('augment')}")
    previous_runs = list(done["runs"])
    clear_unfinished(out, previous_runs, s3)      # shards of a --resume that died: never listed, never read
    have = set(read_rows(out, s3, ["uri"]).column("uri").to_pylist())
    items = [it for it in items if it["uri"] not in have]
    print(f"featurize: --resume: {len(have)} files already featurized, {len(items)} to go")
    return items, previous_runs


def write_shards(cfg: FeaturizeConfig, items: list[dict], banks: dict, run_dir: str, errors_dir: str,
                 s3: S3Options) -> None:
    """The Ray Data pipeline: files -> featurize_files tasks -> zstd Parquet under run_dir, with progress."""
    import ray
    from ray.data import TaskPoolStrategy

    check_fit(alive_nodes(), ("--num-cpus", cfg.num_cpus))
    n_cpus = max(1, int(ray.cluster_resources().get("CPU", 1)))
    per_task = cfg.files_per_task or max(1, min(32, -(-len(items) // (4 * n_cpus))))
    ds = console.quiet(ray.data.from_items(items, override_num_blocks=-(-len(items) // per_task)), cfg.verbose)
    # Ray Data reserves part of the cluster for each operator by default; with one map operator on a
    # small cluster that left one task running at a time (measured: 2 CPUs ran no faster than 1).
    # Set on this dataset's own context (its successors inherit it), not the process-wide one.
    ds.context.op_resource_reservation_enabled = False
    ds = ds.map_batches(featurize_files, batch_size=per_task, batch_format="pyarrow",
                        fn_kwargs={"cfg_dict": cfg.feature_config().to_dict(), "aug_dict": cfg.augment_config().to_dict(),
                                   "banks": banks, "s3": s3, "errors_dir": errors_dir},
                        compute=TaskPoolStrategy(), num_cpus=cfg.num_cpus)  # Ray Data's default scheduling already SPREADs tasks over the nodes
    # no min_rows_per_file: Ray would bundle the (one-row-per-file) input blocks up to it and run
    # everything in one task; shard size is set by the files per task instead
    progress, written = console.Progress("featurize", len(items)), console.WrittenFiles(run_dir, errors_dir, s3)
    with console.polling(lambda: progress.update(*written.poll()), 1.0 if progress.tty else 10.0):
        ds.write_parquet(storage.arrow_path(run_dir), filesystem=storage.arrow_fs(cfg.output, s3), compression="zstd")
    progress.update(*written.poll())
    progress.close()


def merged_errors(out: str, errors_dir: str, items: list[dict], resumed: bool, s3: S3Options) -> pa.Table:
    """errors.parquet's new content: this run's error rows, plus (on --resume) the earlier ones of files not
    retried now."""
    errs = storage.read_table(errors_dir, s3) if storage.exists(errors_dir, s3) else ERROR_SCHEMA.empty_table()
    if resumed and storage.exists(storage.join(out, "errors.parquet"), s3):
        old = storage.read_table(storage.join(out, "errors.parquet"), s3)
        retried = set(it["uri"] for it in items)
        old = old.filter(pc.invert(pc.is_in(old.column("uri"), pa.array(list(retried), pa.string()))))
        errs = pa.concat_tables([old, errs.select(["uri", "error"]).cast(ERROR_SCHEMA)])
    return errs.cast(ERROR_SCHEMA)


def finish(cfg: FeaturizeConfig, inputs: tuple, items: list[dict], run: str, previous_runs: list[str],
           wall: float, s3: S3Options) -> FeaturizeResult:
    """The summary from what was written (cheap column reads), errors.parquet, then the marker, last."""
    out = cfg.output
    run_dir, errors_dir = storage.join(out, "shards", run), storage.join(storage.absolute(out), "errors", run)
    rows = storage.read_table(run_dir, s3, ["uri", "window_start", "window_duration", "augment"]) \
        if storage.exists(run_dir, s3) else None
    n_windows = rows.num_rows if rows is not None and rows.num_rows else 0
    n_files = len(set(rows.column("uri").to_pylist())) if n_windows else 0
    seconds = audio_seconds(rows) if n_windows else 0.0
    errs = merged_errors(out, errors_dir, items, bool(previous_runs), s3)
    errors_table = storage.join(out, "errors.parquet")
    storage.write_table(errors_table, errs, s3)
    if n_files == 0 and not previous_runs:
        raise JobError(f"no file could be featurized ({errs.num_rows} errors, see {errors_table})", exit_code=1)
    runs = previous_runs + ([run] if n_windows else [])
    fcfg: FeatureConfig = cfg.feature_config()
    result = FeaturizeResult(output=out, inputs=inputs, shards=run_dir if n_windows else None, errors_table=errors_table,
                             marker=marker_uri(out), files=n_files, windows=n_windows, audio_hours=seconds / 3600,
                             errors=errs.num_rows, wall_seconds=wall)
    this_run = {"files": n_files, "windows": n_windows, "audio_hours": seconds / 3600, "wall_seconds": wall,
                "clips_per_second": result.clips_per_second}
    summary = {"runs": runs, "feature_config": fcfg.to_dict(), "augment": cfg.augment_config().to_dict(),
               **totals(out, runs, s3), "errors": errs.num_rows, "this_run": this_run, "schema": FEATURE_SCHEMA.names}
    storage.write_json(storage.join(out, "feature_config.json"), fcfg.to_dict(), s3)
    storage.write_json(marker_uri(out), summary, s3)
    return result


def featurize(cfg: FeaturizeConfig) -> FeaturizeResult:
    """Featurize cfg.input / cfg.manifest (or a generated demo set) into cfg.output on Ray (the Ray of this
    process if one is up, else cfg.address, $RAY_ADDRESS or a new local one) and return what it wrote.
    Prints the job's progress lines; raises JobError for bad input and when nothing could be featurized."""
    s3 = S3Options.from_env(cfg.endpoint_url)
    inputs, items = list_inputs(cfg, s3)
    banks = mixing_banks(items, "montage" in cfg.augment_kinds)   # every listed file, also those --resume skips
    items, previous_runs = previous_output(cfg, items, s3)
    items = items * max(1, cfg.repeat)
    console.ensure_ray(cfg.address, cfg.verbose)
    import ray

    t0 = time.time()
    run = time.strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6]
    # errors_dir absolute: the tasks write it, and their working directory need not be this process's
    run_dir, errors_dir = storage.join(cfg.output, "shards", run), storage.join(storage.absolute(cfg.output), "errors", run)
    print(f"featurize: {len(items)} files -> {run_dir} on {max(1, int(ray.cluster_resources().get('CPU', 1)))} "
          f"CPUs (window {cfg.window_seconds:g} s, {cfg.n_mels} mels, {cfg.augment} augmented copies per labeled "
          "file)", flush=True)
    if items:
        write_shards(cfg, items, banks, run_dir, errors_dir, s3)
    return finish(cfg, inputs, items, run, previous_runs, time.time() - t0, s3)


def main(argv=None) -> int:
    return run_cli("featurize", featurize, config_of(parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
