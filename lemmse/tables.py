r"""The tidy result tables the workflow gathers, and the names of their columns.

Two tables, one row per observation, written by the ``gather`` stage under ``results/tables/``
(``.parquet`` and ``.csv``; each study's rows are also ``tables/studies/<study>.parquet`` and the
labelled cube ``tables/studies/<study>.zarr``, indexed by the key columns). ``pd.read_parquet(path)`` is all a reader needs.

Who writes each value: gather (:mod:`lemmse.gather`) only reads and joins. Each value column below
names its producer in brackets — [est] the estimator store's shards (:mod:`lemmse.analytic`,
variable named after the bracket), [net] the network evaluation store
(:func:`lemmse.training.infer.infer_store`) — or [gather] for the one value computed at the join,
PSNR(network, estimator), which needs both stores' outputs.

``metrics`` — a trained network against an analytic estimator of the same training set, task,
pre-inverse and patch size, on the same measurement ``y``:

========================  =====================================================================
dataset                   training data set (str)
eval_dataset              data set the measurements come from (== dataset unless OOD) (str)
task                      denoising | inpainting | deconvolution
preinverse                label of the pre-inverse B in the config (identity, pinv, tik1e-2, ...)
arch                      unet | resnet | patchmlp
patch                     P, receptive field of the network and patch size of the estimator
train_size                N, number of training images (the first N of the split)
train_sigma               the network's training noise (a key: a study may train several; its folder
                          ``sigma{spec}``): ``0-1`` a σ-conditioned network over U[0, 1],
                          ``0.005-1log`` log-uniform, ``0.2`` one fixed σ (a study's ``train_sigmas``)
estimator                 lemmse | smoothed: the KIND of the estimator the network is compared with
                          (its config label is estimator_label)
smoothing                 s of the smoothed LE-MMSE (0.0 for lemmse)
sigma                     noise level σ of the measurement (float)
split                     train | test (which split the measured image comes from)
image                     index of the image in that split (int)
psnr_net_truth            PSNR(network output, clean x) in dB [net: psnr_truth]
psnr_est_truth            PSNR(estimator output, clean x) in dB [est: psnr_truth]
psnr_net_est              PSNR(network output, estimator output) in dB — the agreement [gather, from
                          both stores' xhat]
psnr_input_est            PSNR(B y, estimator output) in dB — the baseline agreement of the input
                          [est: psnr_input, with the estimator's own B]
Label columns — what the labels above mean, resolved once from the config (:mod:`lemmse.plan.specs`);
they follow from the keys, so the per-study cubes leave them out:
------------------------------------------------------------------------------------------------
preinverse_kind           identity | adjoint | pinv | tikhonov (the kind of the preinverse label)
lam                       Tikhonov λ of the pre-inverse (NaN for the other kinds)
estimator_label           the estimator's config label (its store folder: ``analytic/…/{label}/…``)
train_sigma_min, train_sigma_max  the training noise range of the network; equal for a network
                          trained at one fixed σ (it has rows at that σ only)
The diagnostic columns below are filled on rows against the plain LE-MMSE whose store computed
them (:meth:`lemmse.plan.sweep.Plan.wants_diagnostics`) and NaN elsewhere. Two density conventions
(MATH.md "Diagnostics"); figures and claims that reproduce the paper use the ``_paper`` ones:
------------------------------------------------------------------------------------------------
neg_log_density_image_paper       −log Σ_d exp(−‖y − A x_d‖²/2σ²): the paper's convention, no
                                  Gaussian constants, no 1/N (nats) [est: −image_log_density_paper]
neg_log_density_patch_paper       −(mean over pixels of s_{n'}), s_{n'} = log Σ_{d,n}
                                  exp(−½‖Q_{n'}By − Q_nBAx_d‖²_{Σ⁺}/σ²): the paper's convention
                                  [est: neg_log_density_patch_paper]
neg_log_density_image_normalised  −log (1/N) Σ_d N(y; A x_d, σ² I), constants included (nats)
                                  [est: −image_log_density]
neg_log_density_patch_normalised  −(mean over pixels of log p_{n'}), the normalised patch density
                                  (1/(N·H·W)) Σ N(Q_{n'}y; Q_nAx_d, σ²Q_nQ_nᵀ)
                                  [est: neg_log_density_patch_normalised]
mass99_observed_mean              mean over OBSERVED pixels (stratum rank > 0; all pixels for
                                  B = I) of the number of training patches holding 99 % of the
                                  LE-MMSE weight [est: mass99_observed_mean]
mass99_observed_median            the median of the same [est: mass99_observed_median]
========================  =====================================================================

``analytic`` — every analytic estimate on its own (no network), for memorisation, density,
mass and patch-size figures:

========================  =====================================================================
dataset, eval_dataset, task, preinverse, estimator, smoothing, patch, train_size, sigma, split,
image                     as above; estimator is mmse | emmse | lemmse | smoothed; patch is 0
                          for mmse and emmse (no patch)
preinverse_kind, lam, estimator_label  as above (label columns; no training σ: no network)
psnr_est_truth            PSNR(estimate, clean x) in dB [est: psnr_truth]
nearest_train_distance    RMS distance of the estimate to its nearest training image (all
                          circular shifts for emmse/lemmse are NOT taken: plain images) — small
                          means memorised [est: nearest_train_distance]
truth_nearest_train_distance  the same for the clean x (the reference level)
                          [est: truth_nearest_train_distance]
neg_log_density_*, mass99_observed_*  as above (lemmse stores with diagnostics; NaN otherwise)
distinct_sources          number of distinct training images owning a single patch with ≥ 50 %
                          of some pixel's weight (the ``source`` map, paper §D.5; lemmse stores
                          with diagnostics, NaN otherwise) — the patchwork [est: distinct_sources]
========================  =====================================================================

PSNR uses a peak of 1 (images in [0, 1]): ``10 log10(1 / mean((a − b)²))``.
"""
from __future__ import annotations

METRICS_KEYS = ("dataset", "eval_dataset", "task", "preinverse", "arch", "patch", "train_size", "train_sigma",
                "estimator", "smoothing", "sigma", "split", "image")
#: Label columns (resolved from the config; not dims of the metrics cube).
METRICS_LABELS = ("preinverse_kind", "lam", "estimator_label", "train_sigma_min", "train_sigma_max")
ANALYTIC_LABELS = ("preinverse_kind", "lam", "estimator_label")
#: Diagnostic value columns of both tables (see above).
DIAGNOSTIC_VALUES = ("neg_log_density_patch_paper", "neg_log_density_image_paper", "neg_log_density_patch_normalised",
                     "neg_log_density_image_normalised", "mass99_observed_mean", "mass99_observed_median")
METRICS_VALUES = ("psnr_net_truth", "psnr_est_truth", "psnr_net_est", "psnr_input_est", *DIAGNOSTIC_VALUES)

ANALYTIC_KEYS = ("dataset", "eval_dataset", "task", "preinverse", "estimator", "smoothing", "patch",
                 "train_size", "sigma", "split", "image")
ANALYTIC_VALUES = ("psnr_est_truth", "nearest_train_distance", "truth_nearest_train_distance", *DIAGNOSTIC_VALUES,
                   "distinct_sources")
