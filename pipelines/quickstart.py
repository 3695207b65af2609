"""quickstart: the whole embedded default, end to end on one local Ray.

    python pipelines/quickstart.py                # into demo_out/
    python pipelines/quickstart.py --output /tmp/demo --epochs 4

generate demo audio (labeled 30 s clips + a long file of alternating speech and music)
  -> featurize (pipelines/featurize.py) -> train with 2 CPU workers (pipelines/train.py)
  -> label the long file and the test clips (pipelines/label.py)
and prints where the features, the model, the report plots and the timeline are. Each stage is the same
job a cluster runs with `ray job submit`; here they share one in-process Ray.
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

from pipelines import console, demo, featurize, train  # noqa: E402


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description="Run demo audio -> featurize -> train -> label on a local Ray.",
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--output", default="demo_out", help="folder for everything the demo writes")
    p.add_argument("--per-class", type=int, default=10, help="generated clips per class")
    p.add_argument("--seconds", type=float, default=30.0, help="length of each generated clip (the seed's 30 s)")
    p.add_argument("--long-seconds", type=float, default=180.0, help="length of the long file to label")
    p.add_argument("--epochs", type=int, default=6, help="training epochs")
    p.add_argument("--num-workers", type=int, default=2, help="training workers (DDP)")
    console.add_verbose(p)
    a = p.parse_args(argv)
    verbose = ["--verbose"] if a.verbose else []

    t0 = time.time()
    out = os.path.abspath(a.output)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    audio = os.path.join(out, "demo_audio")
    features = os.path.join(out, "features")
    labels = os.path.join(out, f"labels-{stamp}")
    if not os.path.exists(os.path.join(audio, "long", "demo-long.wav")):
        demo.main([audio, "--per-class", str(a.per_class), "--seconds", str(a.seconds),
                   "--long", str(a.long_seconds)])

    if not os.path.exists(featurize.marker_uri(features)):
        rc = featurize.main(["--input", audio, "--output", features, *verbose])
        if rc:
            return rc
    else:
        print(f"quickstart: features already in {features}")

    name = f"quickstart-{stamp}"
    rc = train.main(["--features", features, "--output", os.path.join(out, "runs"), "--name", name,
                     "--epochs", str(a.epochs), "--min-epochs", str(min(a.epochs, 4)),
                     "--num-workers", str(a.num_workers), "--batch-size", "16",
                     # short crops, several per window: enough steps for the small demo set to converge
                     "--crop-seconds", "2", "--crops-per-window", "8", *verbose])
    if rc:
        return rc
    model = os.path.join(out, "runs", name, "model.pt")

    from pipelines import label

    long_wav = os.path.join(audio, "long", "demo-long.wav")
    timeline = os.path.join(out, f"timeline-{stamp}.png")
    rc = label.main(["--input", long_wav, "--model", model, "--output", labels, "--plot", timeline, "--csv", *verbose])
    if rc:
        return rc

    print("\nquickstart: done in {:.0f} s".format(time.time() - t0))
    print(f"  demo audio   {audio}")
    print(f"  features     {features}   (Parquet shards, errors.parquet, _SUCCESS.json)")
    print(f"  model        {model}")
    print(f"  report       {os.path.join(out, 'runs', name, 'report')}   (metrics.json, loss/accuracy/confusion/roc PNGs)")
    print(f"  labels       {labels}   (per-file and per-segment tables)")
    print(f"  timeline     {timeline}   (truth: {os.path.join(audio, 'long', 'demo-long.csv')})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
