"""What a wider network of the seed's family costs to train (train --channels): one training step (forward,
backward, AdamW) on a worker's batch of 3 s crops, on one thread as the 2-core recipe's workers run, for each width;
parameters too. Imports, network construction and one warm-up step are not timed; the median of --steps.

    .venv/bin/python benchmarks/net_width.py [--channels 32,64,128 48,96,192] [--steps 5]
"""

from __future__ import annotations

import argparse
import os
import sys
import torch

if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks.common import timed, write_results  # noqa: E402
from model import Conv3DNet, NetConfig, count_parameters, expand  # noqa: E402


def step_seconds(channels: tuple[int, ...], batch: int, frames: int, steps: int) -> float:
    """Median seconds of one training step of the 3-class network with these widths."""
    torch.manual_seed(0)
    net = Conv3DNet(NetConfig(channels=channels, n_classes=3, classes=("music", "speech", "noise")))
    opt = torch.optim.AdamW(net.parameters(), 1e-3)
    x = torch.randint(0, 256, (batch, 128, frames), dtype=torch.uint8)        # (B, n_mels, frames) indices
    y = torch.arange(batch) % 3

    def step():
        loss = torch.nn.functional.cross_entropy(net(expand(x)), y)           # expand: (B, 4, 10, n_mels, frames)
        opt.zero_grad()
        loss.backward()
        opt.step()

    return timed(step, steps)                                                  # one warm-up step, then the median


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--channels", nargs="+", default=["32,64,128", "48,96,192"], help="widths to time")
    p.add_argument("--batch", type=int, default=8, help="crops per step (the recipe: 16 over 2 workers)")
    p.add_argument("--frames", type=int, default=129, help="crop frames (3 s at 22,050 Hz, hop 512)")
    p.add_argument("--steps", type=int, default=5)
    a = p.parse_args(argv)
    torch.set_num_threads(1)
    runs = []
    for c in a.channels:
        ch = tuple(int(v) for v in c.split(","))
        net = Conv3DNet(NetConfig(channels=ch, n_classes=3, classes=("music", "speech", "noise")))
        runs.append({"channels": list(ch), "parameters": count_parameters(net),
                     "step_s": step_seconds(ch, a.batch, a.frames, a.steps)})
        print(f"channels {c}: {runs[-1]['parameters']:,} parameters, {runs[-1]['step_s']:.2f} s per step of "
              f"{a.batch} crops", flush=True)
    for r in runs[1:]:
        r["vs_first"] = {"parameters": r["parameters"] / runs[0]["parameters"], "step_s": r["step_s"] / runs[0]["step_s"]}
        print(f"{r['channels']}: {r['vs_first']['parameters']:.2f}x the parameters, {r['vs_first']['step_s']:.2f}x "
              f"the step time of {runs[0]['channels']}")
    path = write_results("net-width", {"runs": runs, "batch": a.batch, "frames": a.frames, "threads": 1,
                                       "steps": a.steps, "timed": "one training step, median; imports, construction "
                                       "and one warm-up step excluded"})
    print(f"figures in {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
