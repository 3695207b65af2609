"""The parts of training that need no cluster: TrainConfig (strict, round-trips through JSON, the CLI's
defaults), what resolve() derives from the data, EarlyStopping, the learning-rate schedule, and a Ray Train
checkpoint written and restored (a Checkpoint is a folder; no Ray is started)."""

import dataclasses
import json
import os

import numpy as np
import pytest
import torch

from model import FeatureConfig
from pipelines import train as job
from pipelines.train_config import TrainConfig, class_weights, resolve
from pipelines.train_ema import WeightEMA
from pipelines.train_loop import EarlyStopping, prepare, restore, save_checkpoint

FILES = {f"/d/{s}/{c}/{c}{k}.wav": (c, s) for c in ("music", "speech") for k in range(10)
         for s in ["train" if k < 8 else "test"]}
ROLES = {u: "test" if s == "test" else "val" if u.endswith("7.wav") else "train" for u, (_, s) in FILES.items()}


def _cli(*argv):
    a = job.parse_args(list(argv))
    a.classes = ("music", "speech")
    return vars(a)


def test_cli_options_are_the_config_fields_with_the_same_defaults():
    cli = vars(job.parse_args([]))
    fields = [f.name for f in dataclasses.fields(TrainConfig)]
    assert fields[:len(cli)] == list(cli)            # train_config.json keeps the CLI's order
    base = TrainConfig().to_dict()
    assert {k: v for k, v in cli.items() if base[k] != v} == {"classes": None}   # set by main from the data


def test_config_round_trips_through_json_and_is_strict():
    cfg = resolve(_cli("--epochs", "5"), FeatureConfig(window_seconds=4.0), ROLES, FILES, {u: 2 for u in FILES}, 2.0)
    back = TrainConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert back == cfg and back.classes == ("music", "speech") and isinstance(back.class_weights, tuple)
    with pytest.raises(ValueError, match="fail_at_epoch"):
        TrainConfig.from_dict({**cfg.to_dict(), "fail_at_epoch": 0})
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.epochs = 1


def test_channels_widen_the_network_and_are_checked():
    cfg = TrainConfig.from_dict({**_cli("--channels", "48,96,192"), "classes": ("music", "speech", "noise")})
    assert cfg.channels == (48, 96, 192) and TrainConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    net, *_ = prepare(dataclasses.replace(cfg, class_weights=(1.0, 1.0, 1.0)), None, torch.device("cpu"), 1)
    assert [b.conv.out_channels for b in net.blocks] == [48, 96, 192] and net.head[-1].out_features == 3
    assert TrainConfig().net_config().channels == (32, 64, 128)          # the seed's network by default
    for bad in ("48,96", "0,64,128", "a,b,c"):
        with pytest.raises(ValueError, match="--channels"):
            TrainConfig(channels=bad)


def test_pooling_reaches_the_network_and_is_checked():
    cfg = TrainConfig.from_dict({**_cli("--pooling", "stats"), "classes": ("music", "speech")})
    assert cfg.pooling == "stats" and TrainConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    net, *_ = prepare(dataclasses.replace(cfg, class_weights=(1.0, 1.0)), None, torch.device("cpu"), 1)
    assert net.cfg.pooling == "stats" and net.head[0].in_features == 2 * 128
    assert TrainConfig().net_config().pooling == "mean"                  # the seed's network by default
    with pytest.raises(ValueError, match="--pooling"):
        TrainConfig(pooling="max")


def test_resolve_derives_steps_weights_crops_and_workers():
    fcfg = FeatureConfig(window_seconds=4.0)
    windows = {u: 2 if "music" in u else 1 for u in FILES}      # twice the music windows
    cfg = resolve(_cli("--crop-seconds", "2", "--crops-per-window", "3", "--class-weighting", "balanced"), fcfg, ROLES, FILES, windows, 2.0)
    assert cfg.files == {"train": 14, "val": 2, "test": 4}
    assert cfg.windows == {"train": 21, "val": 3, "test": 6}
    assert cfg.steps_per_epoch == -(-20 * 3 // 16)              # 21 windows -> 20 per 2 equal worker shards
    assert cfg.class_weights == pytest.approx((21 / 28, 21 / 14))  # balanced: music weighs half
    assert cfg.crop_frames == cfg.eval_crop_frames == round(2 * fcfg.sample_rate / fcfg.hop_length)
    assert cfg.cpus_per_worker == 0.5 and cfg.threads_per_worker == 1   # 2 cores: one CPU left to Ray Data
    big = resolve(_cli(), fcfg, ROLES, FILES, windows, 16.0)
    assert big.cpus_per_worker == 4.0 and big.threads_per_worker == 8
    with pytest.raises(ValueError, match="fewer than --num-workers 40"):
        resolve(_cli("--num-workers", "40", "--batch-size", "40"), fcfg, ROLES, FILES, windows, 2.0)
    no_speech = {u: r if "music" in u else "test" for u, r in ROLES.items()}
    with pytest.raises(ValueError, match="speech"):
        resolve(_cli(), fcfg, no_speech, FILES, windows, 2.0)


def test_class_weighting_balanced_sqrt_none():
    counts = np.array([100.0, 25.0, 400.0])
    assert class_weights(counts, "balanced") == pytest.approx([525 / 300, 525 / 75, 525 / 1200])
    w = np.array(class_weights(counts, "sqrt"))
    assert (w * counts).sum() == pytest.approx(counts.sum())           # window-weighted mean 1
    assert w[1] / w[0] == pytest.approx(2.0) and w[0] / w[2] == pytest.approx(2.0)   # n^-1/2
    assert class_weights(counts, "none") == (1.0, 1.0, 1.0)
    with pytest.raises(ValueError, match="'inverse'"):
        class_weights(counts, "inverse")
    fcfg = FeatureConfig(window_seconds=4.0)
    windows = {u: 4 if "music" in u else 1 for u in FILES}
    cfg = resolve(_cli("--class-weighting", "sqrt"), fcfg, ROLES, FILES, windows, 2.0)
    assert cfg.class_weighting == "sqrt" and cfg.class_weights[1] == pytest.approx(2 * cfg.class_weights[0])


def test_early_stopping_keeps_the_best_weights_and_waits_for_min_epochs():
    net = torch.nn.Linear(2, 1)
    stop = EarlyStopping(patience=2, min_epochs=5)
    for epoch, loss in enumerate([1.0, 0.5, 0.6, 0.7, 0.8]):
        with torch.no_grad():
            net.weight.fill_(epoch)
        stop.update(epoch, loss, net)
        assert stop.stopped == (epoch == 4)           # 2 bad epochs after epoch 3, but not before 5 epochs
    assert stop.best_epoch == 1 and stop.best_val_loss == 0.5 and (stop.best_model["weight"] == 1).all()
    assert stop.state() == {"best_val_loss": 0.5, "best_epoch": 1, "bad_epochs": 3, "stopped": True}
    # an improvement by less than 1e-4 is no improvement
    s = EarlyStopping(patience=1, min_epochs=1)
    s.update(0, 1.0, net)
    s.update(1, 1.0 - 5e-5, net)
    assert s.best_epoch == 0 and s.stopped


def test_learning_rate_warms_up_then_decays_to_one_percent():
    cfg = TrainConfig(lr=1e-3, warmup_epochs=1.0, epochs=10)
    assert cfg.lr_at(0.0) == pytest.approx(1e-6)
    assert cfg.lr_at(0.5) == pytest.approx(1e-3 * 0.501)
    assert cfg.lr_at(1.0) == pytest.approx(1e-3)
    assert cfg.lr_at(10.0) == pytest.approx(1e-5) and cfg.lr_at(5.5) == pytest.approx(1e-3 * 0.505)


def test_checkpoint_restores_weights_optimizer_and_progress(tmp_path):
    fcfg = FeatureConfig(window_seconds=4.0)
    cfg = resolve(_cli("--patience", "3"), fcfg, ROLES, FILES, {u: 2 for u in FILES}, 2.0)
    net, _, opt, state, stop, ema = prepare(cfg, None, torch.device("cpu"), 1)
    assert state["starts"] == [0] and state["epoch"] == -1 and ema is None
    net(torch.rand(2, 4, 10, fcfg.n_mels, 64)).sum().backward()
    opt.step()
    stop.update(0, 0.7, net)
    state.update(stop.state(), epoch=0, history=[{"epoch": 0, "val_loss": 0.7}])
    ckpt = save_checkpoint(str(tmp_path), net, fcfg, opt, state, stop, cfg)
    assert os.listdir(tmp_path) == ["model.pt"]

    net2, _, opt2, state2, stop2, _ = prepare(cfg, ckpt, torch.device("cpu"), 1)   # a replaced worker
    assert state2["starts"] == [0, 1] and state2["epoch"] == 0 and state2["history"] == state["history"]
    assert all(torch.equal(a, b) for a, b in zip(net.state_dict().values(), net2.state_dict().values()))
    assert stop2.state() == stop.state() and stop2.patience == 3
    assert all(torch.equal(stop.best_model[k], stop2.best_model[k]) for k in stop.best_model)
    assert opt2.state_dict()["state"][0]["step"] == 1


def test_weight_average_follows_the_weights_and_warms_up():
    net = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.BatchNorm1d(2))
    with torch.no_grad():
        net[0].weight.fill_(0.0)
    ema = WeightEMA(net, 0.9)
    assert not ema.net.training and not any(p.requires_grad for p in ema.net.parameters())
    rates, want = [], 0.0
    for step in range(100):
        with torch.no_grad():
            net[0].weight.fill_(float(step % 7))
        net(torch.rand(4, 2))                          # BatchNorm statistics move too
        rates.append(ema.rate())
        ema.update()
        want += rates[-1] * (step % 7 - want)          # the recurrence, by hand
        assert torch.allclose(ema.net[0].weight, torch.full((2, 2), want), atol=1e-5)
    assert rates[0] == pytest.approx(0.9) and rates[5] == pytest.approx(1 - 6 / 15) and rates[-1] == pytest.approx(0.1)
    assert ema.net[1].num_batches_tracked == net[1].num_batches_tracked == 100
    assert not torch.equal(ema.net[1].running_mean, torch.zeros(2))
    assert net[0].weight.eq(1).all()                   # the source is never touched
    with pytest.raises(ValueError, match="decay"):
        WeightEMA(net, 1.0)
    with pytest.raises(ValueError, match="--ema-decay"):
        TrainConfig(ema_decay=1.5)


def test_checkpoint_restores_the_weight_average(tmp_path):
    fcfg = FeatureConfig(window_seconds=4.0)
    cfg = resolve(_cli("--ema-decay", "0.99"), fcfg, ROLES, FILES, {u: 2 for u in FILES}, 2.0)
    net, _, opt, state, stop, ema = prepare(cfg, None, torch.device("cpu"), 1)
    for _ in range(3):
        net(torch.rand(2, 4, 10, fcfg.n_mels, 64)).sum().backward()
        opt.step()
        ema.update()
    assert not all(torch.equal(a, b) for a, b in zip(net.state_dict().values(), ema.net.state_dict().values()))
    stop.update(0, 0.7, ema.net)
    state.update(stop.state(), epoch=0, ema_updates=ema.updates)
    ckpt = save_checkpoint(str(tmp_path), net, fcfg, opt, state, stop, cfg, ema)
    net2, _, _, state2, _, ema2 = prepare(cfg, ckpt, torch.device("cpu"), 1)
    assert ema2.updates == 3 and ema2.rate() == ema.rate() and ema2.source is net2
    assert all(torch.equal(a, b) for a, b in zip(ema.net.state_dict().values(), ema2.net.state_dict().values()))
    assert all(torch.equal(a, b) for a, b in zip(net.state_dict().values(), net2.state_dict().values()))


def test_ingest_auto_keeps_small_sets_in_memory_and_streams_past_the_budget():
    fcfg = FeatureConfig(window_seconds=4.0)
    row_mib = fcfg.n_mels * fcfg.n_frames() / 2**20
    windows = {u: 2 for u in FILES}                             # train 28, val 4, test 8 windows
    cfg = resolve(_cli(), fcfg, ROLES, FILES, windows, 2.0)
    # per worker: 14 train + 6 eval windows held, the larger part twice while it is stacked
    assert cfg.ingest == "auto" and cfg.ingest_path == "memory" and cfg.shuffle_buffer == 0
    assert cfg.worker_data_mb == pytest.approx((14 + 6 + 14) * row_mib)
    small = resolve(_cli("--memory-budget-mb", str(33 * row_mib)), fcfg, ROLES, FILES, windows, 2.0)
    assert small.ingest_path == "stream" and small.worker_data_mb == cfg.worker_data_mb
    assert small.shuffle_buffer == 14                           # at most the worker's part
    budget = ["--memory-budget-mb", str(33 * row_mib)]
    assert resolve(_cli(*budget, "--batch-size", "2"), fcfg, ROLES, FILES, windows, 2.0).shuffle_buffer == 8   # 33 / 4
    assert resolve(_cli(*budget, "--batch-size", "6"), fcfg, ROLES, FILES, windows, 2.0).shuffle_buffer == 12  # 4 x 3
    stream = resolve(_cli("--ingest", "stream"), fcfg, ROLES, FILES, windows, 2.0)
    assert stream.ingest_path == "stream" and stream.shuffle_buffer == 14
    forced = resolve(_cli("--ingest", "memory", "--memory-budget-mb", "0.001"), fcfg, ROLES, FILES, windows, 2.0)
    assert forced.ingest_path == "memory"
    with pytest.raises(SystemExit):
        job.parse_args(["--memory-budget-mb", "0"])
    with pytest.raises(ValueError, match="'disk'"):
        resolve({**_cli(), "ingest": "disk"}, fcfg, ROLES, FILES, windows, 2.0)
