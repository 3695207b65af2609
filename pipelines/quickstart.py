"""quickstart: the whole embedded default, end to end on one local Ray.

    python pipelines/quickstart.py                # into demo_out/
    python pipelines/quickstart.py --output /tmp/demo --epochs 4

generate demo audio (labeled 30 s clips + a long file of alternating speech and music)
  -> featurize (pipelines/featurize.py) -> train with 2 CPU workers (pipelines/train.py)
  -> label the long file (pipelines/label.py)
and prints where the features, the model, the report plots and the timeline are. Each stage is the same
job a cluster runs with `ray job submit`, called here through its Python API (pipelines/api.py); they
share one in-process Ray.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

if __package__ in (None, ""):  # `python pipelines/quickstart.py`: make the repository root importable
    _ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    sys.path.insert(0, _ROOT)
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [_ROOT, os.environ.get("PYTHONPATH")]))

from pipelines import console, demo  # noqa: E402
from pipelines.api import (FeaturizeConfig, JobError, LabelConfig, TrainConfig, featurize, label,  # noqa: E402
                           train)
from pipelines.shards import marker_uri  # noqa: E402


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="Run demo audio -> featurize -> train -> label on a local Ray.",
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--output", default="demo_out", help="folder for everything the demo writes")
    p.add_argument("--per-class", type=int, default=10, help="generated clips per class")
    p.add_argument("--seconds", type=float, default=30.0, help="length of each generated clip (the seed's 30 s)")
    p.add_argument("--long-seconds", type=float, default=180.0, help="length of the long file to label")
    p.add_argument("--epochs", type=int, default=6, help="training epochs")
    p.add_argument("--num-workers", type=int, default=2, help="training workers (DDP)")
    console.add_verbose(p)
    return p.parse_args(argv)


def run(a: argparse.Namespace) -> None:
    """The chain, through the jobs' API functions (pipelines/api.py); raises JobError as they do."""
    t0 = time.time()
    out = os.path.abspath(a.output)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    audio = os.path.join(out, "demo_audio")
    features = os.path.join(out, "features")
    labels = os.path.join(out, f"labels-{stamp}")
    if not os.path.exists(os.path.join(audio, "long", "demo-long.wav")):
        demo.main([audio, "--per-class", str(a.per_class), "--seconds", str(a.seconds),
                   "--long", str(a.long_seconds)])

    if not os.path.exists(marker_uri(features)):
        print(featurize(FeaturizeConfig(input=audio, output=features, verbose=a.verbose)).summary_line(), flush=True)
    else:
        print(f"quickstart: features already in {features}")

    name = f"quickstart-{stamp}"
    # short crops, several per window: enough steps for the small demo set to converge
    trained = train(TrainConfig(features=features, output=os.path.join(out, "runs"), name=name, epochs=a.epochs,
                                min_epochs=min(a.epochs, 4), num_workers=a.num_workers, batch_size=16,
                                crop_seconds=2.0, crops_per_window=8.0, verbose=a.verbose))
    print(trained.summary_line(), flush=True)

    long_wav = os.path.join(audio, "long", "demo-long.wav")
    timeline = os.path.join(out, f"timeline-{stamp}.png")
    labeled = label(LabelConfig(input=long_wav, model=trained.model, output=labels, plot=timeline,
                                format=("parquet", "csv"), verbose=a.verbose))
    print(labeled.summary_line(), flush=True)

    print("\nquickstart: done in {:.0f} s".format(time.time() - t0))
    print(f"  demo audio   {audio}")
    print(f"  features     {features}   (Parquet shards, errors.parquet, _SUCCESS.json)")
    print(f"  model        {trained.model}")
    print(f"  report       {trained.report}   (metrics.json, loss/accuracy/confusion/roc PNGs)")
    print(f"  labels       {labeled.output}   (per-file and per-segment tables)")
    print(f"  timeline     {labeled.plot}   (truth: {os.path.join(audio, 'long', 'demo-long.csv')})")


def main(argv=None) -> int:
    try:
        run(parse_args(argv))
    except JobError as e:
        print(f"quickstart: error: {e}", file=sys.stderr)
        return e.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
