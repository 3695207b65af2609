"""Accuracy benchmark of pipelines/train.py on the real data: the seed's network, the seed's representation.

    .venv/bin/python benchmarks/accuracy.py                 # featurize, train/test, then 5-fold CV
    .venv/bin/python benchmarks/accuracy.py --skip-cv       # train/test only (~within the hour on 2 cores)

On ../shared/data/music_speech (128 real 30 s clips, GTZAN music/speech, the seed's train/test split):
  1. featurize (pipelines/featurize.py, 30 s windows, 128 mels) into --work;
  2. train on `train` (a stratified part held out for validation), report on `test` (where the seed had
     50%): accuracy, ROC AUC, wall time (target >= 98% test accuracy, within an hour on 2 cores);
  3. 5-fold stratified cross-validation over all 128 clips: mean +- std accuracy, wall time
     (target >= 98% mean);
  4. training throughput in samples/s on full 30 s windows and on crops (forward + backward + AdamW step
     of the network alone, one process, all cores), the training runs' own crops/s, and peak memory
     (per Ray Train worker, and this driver).
Prints one table; the runs' reports (metrics.json, loss/accuracy/confusion/ROC plots) stay in --work.
Extra arguments after `--` go to pipelines/train.py (e.g. `-- --epochs 30 --crop-seconds 4`).
"""

import argparse
import json
import os
import resource
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [REPO, os.environ.get("PYTHONPATH")]))
os.environ.setdefault("RAY_AUTH_MODE", "disabled")


def throughput(frames: int, batch: int, repeats: int = 3) -> float:
    """Training samples/s of the network alone on (batch, 128 mels, frames) uint8 inputs."""
    import torch

    from model import Conv3DNet, expand

    torch.manual_seed(0)
    net = Conv3DNet().train()
    opt = torch.optim.AdamW(net.parameters(), 1e-3)
    x = torch.randint(0, 256, (batch, 128, frames), dtype=torch.uint8)
    y = torch.randint(0, 2, (batch,))

    def step():
        loss = torch.nn.functional.cross_entropy(net(expand(x)), y)
        opt.zero_grad()
        loss.backward()
        opt.step()

    step()  # warm-up
    t = time.time()
    for _ in range(repeats):
        step()
    return batch * repeats / (time.time() - t)


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    extra = argv[argv.index("--") + 1:] if "--" in argv else []
    argv = argv[:argv.index("--")] if "--" in argv else argv
    p = argparse.ArgumentParser(description="Accuracy of pipelines/train.py on ../shared/data/music_speech.")
    p.add_argument("--data", default=os.path.join(REPO, "..", "shared", "data", "music_speech"),
                   help="the real data set (train/ and test/ of music/ and speech/ WAVs)")
    p.add_argument("--work", default="/tmp/music-speech-accuracy", help="features, runs and reports go here")
    p.add_argument("--folds", type=int, default=5, help="cross-validation folds")
    p.add_argument("--skip-cv", action="store_true", help="only the train/test run")
    p.add_argument("--skip-train-test", action="store_true", help="only the cross-validation")
    p.add_argument("--num-workers", type=int, default=2, help="Ray Train workers")
    a = p.parse_args(argv)
    if not os.path.isdir(a.data):
        print(f"accuracy: error: {a.data} does not exist", file=sys.stderr)
        return 2

    import ray
    import torch

    from pipelines import featurize, train

    ncpu = os.cpu_count() or 1
    ray.init(num_cpus=ncpu, include_dashboard=False,
             runtime_env={"env_vars": {"PYTHONPATH": REPO, "RAY_AUTH_MODE": os.environ["RAY_AUTH_MODE"]}})
    feats = os.path.join(a.work, "features")
    t0 = time.time()
    if not os.path.exists(os.path.join(feats, "_SUCCESS.json")):
        rc = featurize.main(["--input", a.data, "--output", feats])
        if rc:
            return rc
    feat_s = time.time() - t0
    stamp = time.strftime("%Y%m%d-%H%M%S")
    rows = []
    common = ["--features", feats, "--output", os.path.join(a.work, "runs"), "--num-workers", str(a.num_workers), *extra]

    if not a.skip_train_test:
        name = f"train-test-{stamp}"
        t = time.time()
        rc = train.main([*common, "--name", name])
        if rc:
            return rc
        m = json.load(open(os.path.join(a.work, "runs", name, "report", "metrics.json")))
        rows.append(("train/test: test accuracy (64 clips)", f"{m['test']['accuracy']:.4f} "
                     f"({round((1 - m['test']['accuracy']) * m['test']['n'])} wrong), ROC AUC {m['test']['roc_auc']:.4f}"))
        rows.append(("train/test: best epoch / epochs run", f"{m['best_epoch']} / {m['epochs_run']}"))
        rows.append(("train/test: wall time", f"{time.time() - t:.0f} s"))
        rows.append(("train/test: training crops/s (job, all workers)", f"{m['train_samples_per_s']:.2f} "
                     f"({m['train_config']['crop_frames']} frames)"))
        rows.append(("train/test: test windows/s (eval, whole 30 s windows)", f"{m['test_windows_per_s']:.2f}"))
        rows.append(("train/test: peak memory per worker", f"{m['peak_memory_mb_per_worker']:.0f} MB"))
        rows.append(("train/test: report", os.path.join(a.work, "runs", name, "report")))
    if not a.skip_cv:
        name = f"cv-{stamp}"
        t = time.time()
        rc = train.main([*common, "--name", name, "--folds", str(a.folds)])
        if rc:
            return rc
        cv = json.load(open(os.path.join(a.work, "runs", name, "cv.json")))
        rows.append((f"{a.folds}-fold CV accuracy (128 clips)", f"{cv['accuracy_mean']:.4f} +- {cv['accuracy_std']:.4f} "
                     f"({', '.join(f'{x:.3f}' for x in cv['fold_accuracies'])})"))
        rows.append((f"{a.folds}-fold CV wall time", f"{time.time() - t:.0f} s"))
        rows.append(("CV peak memory per worker", f"{cv['peak_memory_mb_per_worker']:.0f} MB"))
    ray.shutdown()

    torch.set_num_threads(ncpu)
    full = throughput(1292, 2)
    crop_frames = train.FeatureConfig().n_frames(int(3.0 * 22050))
    crop = throughput(crop_frames, 8)
    rows.append((f"network training samples/s, full 30 s windows (1292 frames, {ncpu} threads)", f"{full:.2f}"))
    rows.append((f"network training samples/s, 3 s crops ({crop_frames} frames, {ncpu} threads)", f"{crop:.2f}"))
    rows.append(("featurize (128 clips)", f"{feat_s:.0f} s" + (" (reused)" if feat_s < 5 else "")))
    rows.append(("driver peak RSS", f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB"))
    w = max(len(k) for k, _ in rows)
    print("\n| figure | value |\n| --- | --- |")
    for k, v in rows:
        print(f"| {k.ljust(w)} | {v} |")
    print(f"\ncommand: .venv/bin/python benchmarks/accuracy.py {' '.join(sys.argv[1:])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
