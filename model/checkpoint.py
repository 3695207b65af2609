"""Checkpoints as plain data: tensors, numbers, strings and dicts only, so they load with
torch.load(weights_only=True) and never unpickle arbitrary objects. Storage (local or s3://) is the
caller's: these functions take open binary file objects."""

from __future__ import annotations

import json

import torch

from .features import FeatureConfig
from .net import Conv3DNet, NetConfig

FORMAT = "music-speech-conv3d/1"


def checkpoint_dict(net: Conv3DNet, feature_cfg: FeatureConfig, **extra) -> dict:
    """extra: optimizer state, epoch, metrics ... (plain data only)."""
    state = {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}   # any training layout
    return {
        "format": FORMAT,
        "net_config": json.dumps(net.cfg.to_dict()),
        "feature_config": json.dumps(feature_cfg.to_dict()),
        "model": state,
        **extra,
    }


def save_checkpoint(f, net: Conv3DNet, feature_cfg: FeatureConfig, **extra) -> None:
    torch.save(checkpoint_dict(net, feature_cfg, **extra), f)


def read_checkpoint(f, map_location="cpu") -> dict:
    ckpt = torch.load(f, map_location=map_location, weights_only=True)
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise ValueError(f"not a {FORMAT} checkpoint")
    return ckpt


def net_from_checkpoint(ckpt: dict) -> tuple[Conv3DNet, FeatureConfig]:
    net = Conv3DNet(NetConfig.from_dict(json.loads(ckpt["net_config"])))
    net.load_state_dict(ckpt["model"])
    return net, FeatureConfig.from_dict(json.loads(ckpt["feature_config"]))


def load_checkpoint(f, map_location="cpu") -> tuple[Conv3DNet, FeatureConfig, dict]:
    """-> (network in eval mode, its feature config, the whole checkpoint dict)."""
    ckpt = read_checkpoint(f, map_location)
    net, fcfg = net_from_checkpoint(ckpt)
    return net.eval(), fcfg, ckpt
