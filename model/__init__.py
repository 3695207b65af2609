"""The pure core: features and network. Imports torch/torchaudio and numpy only (no Ray, no paths)."""

from .checkpoint import load_checkpoint, net_from_checkpoint, read_checkpoint, save_checkpoint
from .fast import FastConv3D
from .features import FeatureConfig, colormap_index, expand, featurize, normalized_spectrogram
from .net import Conv3DNet, NetConfig, count_parameters

__all__ = [
    "FeatureConfig", "featurize", "normalized_spectrogram", "colormap_index", "expand",
    "NetConfig", "Conv3DNet", "count_parameters", "FastConv3D",
    "save_checkpoint", "load_checkpoint", "read_checkpoint", "net_from_checkpoint",
]
