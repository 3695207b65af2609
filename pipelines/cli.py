"""music-speech: the console command (pyproject's [project.scripts]); one subcommand per job.

    music-speech label --input DIR --model runs/NAME/model.pt --output labels
is `python pipelines/label.py --input ...`: the rest of the command line goes to the job's own main(argv),
so each subcommand has exactly the job's options and --help. The job is imported only when it runs.
"""

from __future__ import annotations

import importlib
import sys

JOBS = {
    "featurize": "audio (folder, s3:// prefix, manifest) -> Parquet shards of uint8 colormap indices",
    "train": "Ray Train DDP of the Conv3D network on featurize's shards -> model.pt and a report",
    "label": "label an archive music/speech with a model -> per-file labels and segment timelines",
    "quickstart": "generated demo audio -> featurize -> train -> label, on a local Ray",
}


def usage() -> str:
    width = max(map(len, JOBS))
    lines = ["usage: music-speech {" + ",".join(JOBS) + "} [options]", "",
             "Tell music from speech at archive scale on Ray. Each subcommand is the job of the same name",
             "(python pipelines/<job>.py); `music-speech <job> --help` lists its options.", "", "subcommands:"]
    lines += [f"  {name.ljust(width)}  {text}" for name, text in JOBS.items()]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        sys.stdout.write(usage())
        return 0
    job = argv[0]
    if job not in JOBS:
        sys.stderr.write(usage() + f"music-speech: error: unknown subcommand {job!r} (choose from {', '.join(JOBS)})\n")
        return 2
    module = importlib.import_module(f"pipelines.{job}")
    prog, sys.argv[0] = sys.argv[0], f"music-speech {job}"  # argparse's prog in the job's usage and errors
    try:
        return module.main(argv[1:]) or 0
    finally:
        sys.argv[0] = prog


if __name__ == "__main__":
    sys.exit(main())
