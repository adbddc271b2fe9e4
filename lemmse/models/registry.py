"""The architectures by name, their option classes and one builder.

``build_model(arch, channels, patch, options)`` returns a module ``net(v, σ)`` mapping
``(B, C, H, W)`` to ``(B, C, H, W)`` with receptive field exactly ``patch × patch``.
``options`` is ``None`` (the small CPU default), ``"paper"`` (about 4 M parameters, the paper's
Table 3) or a mapping of option overrides (validated: an unknown key or bad value names itself).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Callable, Mapping

import torch

from lemmse.errors import LemmseInputError
from lemmse.models.patch_mlp import PatchMLP, PatchMLPOptions
from lemmse.models.resnet import ResNet, ResNetOptions
from lemmse.models.unet import UNet, UNetOptions

#: Patch sizes the architectures are tested for (any odd P >= 3 builds).
SUPPORTED_PATCHES = (3, 5, 7, 9, 11, 13, 17)
PRESETS = ("small", "paper")


@dataclass(frozen=True)
class Architecture:
    name: str
    module: Callable[..., torch.nn.Module]
    options: type


ARCHITECTURES: dict[str, Architecture] = {
    "unet": Architecture("unet", UNet, UNetOptions),
    "resnet": Architecture("resnet", ResNet, ResNetOptions),
    "patchmlp": Architecture("patchmlp", PatchMLP, PatchMLPOptions),
}


def get_architecture(arch: str) -> Architecture:
    if arch not in ARCHITECTURES:
        raise LemmseInputError(f"unknown architecture {arch!r}; choose one of {', '.join(ARCHITECTURES)}")
    return ARCHITECTURES[arch]


def validate_patch(patch: int, image_size: tuple[int, int] | None = None) -> int:
    """``patch`` must be an odd integer >= 3 and (given ``image_size``) at most min(H, W)."""
    if isinstance(patch, bool) or not isinstance(patch, int) or patch < 3 or patch % 2 == 0:
        raise LemmseInputError(f"patch size P={patch!r} must be an odd integer >= 3")
    if image_size is not None and patch > min(image_size):
        raise LemmseInputError(f"patch size P={patch} is larger than the {image_size[0]}×{image_size[1]} images")
    return patch


def resolve_options(arch: str, patch: int, preset: str = "small",
                    overrides: Mapping[str, Any] | None = None):
    """The options dataclass of ``arch``: the ``preset`` values, then ``overrides``."""
    spec = get_architecture(arch)
    if preset not in PRESETS:
        raise LemmseInputError(f"unknown model preset {preset!r}; choose one of {', '.join(PRESETS)}")
    base = spec.options.paper(patch) if preset == "paper" else spec.options()
    overrides = dict(overrides or {})
    known = {f.name for f in dataclasses.fields(spec.options)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise LemmseInputError(f"unknown {arch} option(s) {', '.join(map(repr, unknown))}; "
                               f"{arch} takes {', '.join(sorted(known))}")
    try:
        return dataclasses.replace(base, **overrides)
    except (TypeError, ValueError) as err:
        raise LemmseInputError(f"bad {arch} options {overrides}: {err}") from err


def options_dict(options) -> dict[str, Any]:
    """Options as JSON-ready plain values (tuples become lists)."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(options).items()}


def build_model(arch: str, channels: int, patch: int, options=None) -> torch.nn.Module:
    """Build ``arch`` for ``channels`` image channels and receptive field ``patch``.

    ``options``: ``None`` (small), ``"paper"``, a mapping of overrides, or an options instance.
    Parameters are initialised from the global torch RNG (seed it, or use ``torch.random.fork_rng``).
    """
    spec = get_architecture(arch)
    validate_patch(patch)
    if isinstance(channels, bool) or not isinstance(channels, int) or channels < 1:
        raise LemmseInputError(f"channels={channels!r} must be a positive integer")
    if options is None or isinstance(options, str):
        options = resolve_options(arch, patch, options or "small")
    elif isinstance(options, Mapping):
        options = resolve_options(arch, patch, "small", options)
    elif not isinstance(options, spec.options):
        raise LemmseInputError(f"options for {arch} must be a {spec.options.__name__}, got {type(options).__name__}")
    return spec.module(channels, patch, options)


def count_parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
