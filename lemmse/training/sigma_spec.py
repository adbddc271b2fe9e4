"""The name of a training noise distribution, as it appears in paths (``sigma{spec}``).

Torch-free on purpose: the workflow plans paths with it in every job, and a job that does not train
or run a network should not pay for importing PyTorch.
"""
from __future__ import annotations


def format_sigma_spec(sigma_min: float, sigma_max: float, sampling: str = "uniform") -> str:
    """``0.05`` for a fixed σ, ``0-1`` for a uniform range, ``0.005-1log`` for a log-uniform one."""
    if sigma_min == sigma_max:
        return f"{sigma_min:g}"
    return f"{sigma_min:g}-{sigma_max:g}" + ("log" if sampling == "log-uniform" else "")
