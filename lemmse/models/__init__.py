"""Networks with an exact ``P×P`` receptive field, circular padding and σ conditioning.

``build_model(arch, channels, patch, options)`` with ``arch`` one of ``unet``, ``resnet``,
``patchmlp``; every model is called as ``net(B y, σ)``. See :mod:`lemmse.models.layers` for the
choice of normalisations that keeps the networks exactly local.
"""
from lemmse.models.embedding import SigmaEmbedding
from lemmse.models.layers import PixelGroupNorm, circular_conv
from lemmse.models.patch_mlp import PatchMLP, PatchMLPOptions, extract_patches
from lemmse.models.registry import (ARCHITECTURES, PRESETS, SUPPORTED_PATCHES, build_model,
                                    count_parameters, get_architecture, options_dict,
                                    resolve_options, validate_patch)
from lemmse.models.resnet import ResNet, ResNetOptions
from lemmse.models.unet import UNet, UNetOptions, kernel_plan

__all__ = [
    "ARCHITECTURES", "PRESETS", "SUPPORTED_PATCHES", "build_model", "count_parameters",
    "get_architecture", "options_dict", "resolve_options", "validate_patch", "SigmaEmbedding",
    "PixelGroupNorm", "circular_conv", "UNet", "UNetOptions", "kernel_plan", "ResNet",
    "ResNetOptions", "PatchMLP", "PatchMLPOptions", "extract_patches",
]
