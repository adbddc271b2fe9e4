"""Datasets and measurements.

Datasets (:mod:`lemmse.data.prepare`): ``digits``, ``photos``, ``faces`` are made of real images
bundled with scikit-learn / scikit-image (no download; :mod:`lemmse.data.embedded`);
``fashion_mnist``, ``cifar10``, ``ffhq`` are read from their upstream files by our own readers
(:mod:`lemmse.data.fashion_mnist`, :mod:`lemmse.data.cifar10`, :mod:`lemmse.data.ffhq`).

* :func:`prepare_dataset` (name, out_path, **config) → ``results/data/{dataset}.zarr`` with
  ``train (train_image, c, h, w)`` and ``test (test_image, c, h, w)``, float32 in [0, 1];
* :func:`load_split` (store_path, split, count=None) → ``np.ndarray (N, C, H, W)``;
* :func:`build_measurements` / :func:`create_measurement_store` + :func:`measure` +
  :func:`finalize_measurements` → ``results/measurements/{dataset}/{task}.zarr`` with
  ``y (split, image, sigma, c, h, w)``; :func:`load_measurements`, :func:`load_clean`, :func:`noise`.
"""
from __future__ import annotations

from lemmse.lazy import lazy_exports

#: Public name -> the submodule that defines it, imported on first use (PEP 562): planning a
#: workflow reads the data set registry without importing every reader and store module.
_EXPORTS = {
    **dict.fromkeys(("build_measurements", "create_measurement_store", "finalize_measurements", "load_clean",
                     "load_measurements", "measure", "noise", "open_measurements", "validate_sigmas"),
                    "measurements"),
    **dict.fromkeys(("DATASETS", "SPLITS", "array_sha256", "build_dataset", "get_spec", "load_split", "open_data",
                     "prepare_dataset", "resolve_config"), "prepare"),
}

__all__ = list(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
