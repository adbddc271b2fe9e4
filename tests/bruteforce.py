r"""Independent float64 brute-force references for the estimators of ``shared/MATH.md``.

Nothing here imports :mod:`lemmse`: operators are explicit dense ``(C·H·W) × (C·H·W)`` float64
matrices built from the definitions, and every estimator is written straight from its formula
with explicit broadcasting. Distances are always computed as **direct differences**
``Σ (a - b)²`` — never through the expansion ``‖a‖² + ‖b‖² - 2a·b`` — and all weights are
normalised with log-sum-exp. Slow on purpose: use tiny problems (``D`` ≲ 40, ``H, W`` ≤ 16).

Conventions
-----------
* Images are numpy arrays ``(C, H, W)``; batches ``(count, C, H, W)``; a flat image vector is the
  C-order ravel, index ``c·H·W + i·W + j``.
* ``T_g`` translates by ``g``: ``(T_g x)(n) = x(n - g)``, i.e. ``np.roll(x, g)``.
* Degenerate Gaussian (MATH.md): with ``Σ = U Λ Uᵀ`` keeping eigenvalues ``λ > RANK_RTOL·λ_max``,
  ``log N(z; μ, Σ) = -½‖Λ^{-1/2}Uᵀ(z - μ)‖² - (r/2) log 2π - ½ Σ log λ`` if ``z - μ ∈ Im Σ``,
  ``-∞`` otherwise.
* Support tests (``z ∈ Im Σ``): the project decides which entries are observed from the
  operator, never from measured values (bench README, fault (2)). The references therefore
  decide every support question on a *generic* vector of the same subspace — ``B v`` (or
  ``Q_{n'} v``) for a fixed random ``v`` — which coincides with the literal test on ``B y`` for
  almost every ``y`` but does not flip when an observed value happens to be exactly zero.
  ``generic_support=False`` applies the literal test to the measured data instead.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

try:  # small products run far faster on one BLAS thread, above all beside torch's spinning threads
    from threadpoolctl import threadpool_limits
except ImportError:  # pragma: no cover - threadpoolctl ships with scikit-learn
    threadpool_limits = None

#: eigenvalues of a covariance-type matrix count as non-zero above this fraction of the largest
RANK_RTOL = 1e-12
#: singular values of ``B`` count as non-zero above this fraction of the largest (= sqrt(RANK_RTOL))
SV_RTOL = 1e-6
#: relative tolerance of the subspace-membership tests
SUPPORT_RTOL = 1e-8
#: seed of the generic vector used for support decisions
GENERIC_SEED = 20240611
#: log-width around the crossing key within which :func:`lemmse_details` counts near-tied keys
MASS_NEAR_LOG = 0.01


#: Every task × pre-inverse pair the estimators accept (Tikhonov for deconvolution only).
TASK_PREINVERSES = [
    ("denoising", "identity"),
    ("inpainting", "identity"),
    ("inpainting", "adjoint"),
    ("inpainting", "pinv"),
    ("deconvolution", "identity"),
    ("deconvolution", "adjoint"),
    ("deconvolution", "pinv"),
    ("deconvolution", "tikhonov"),
]


def _one_blas_thread(fn):
    """Run ``fn`` with numpy's BLAS limited to one thread (speed only; results are unchanged)."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        if threadpool_limits is None:
            return fn(*args, **kwargs)
        with threadpool_limits(limits=1, user_api="blas"):
            return fn(*args, **kwargs)
    return wrapper


# --------------------------------------------------------------------------------------------
# operators as dense matrices
# --------------------------------------------------------------------------------------------

def gaussian_kernel(h: int, w: int, std: float) -> np.ndarray:
    """``(H, W)`` kernel ``g(d) ∝ exp(-‖d‖²/2s²)`` for circular offsets ``d ∈ [-H//2, H-H//2) × [-W//2, W-W//2)``,
    normalised to sum 1, stored at index ``d mod (H, W)``."""
    kernel = np.zeros((h, w))
    for dy in range(-(h // 2), h - h // 2):
        for dx in range(-(w // 2), w - w // 2):
            kernel[dy % h, dx % w] = np.exp(-(dy * dy + dx * dx) / (2.0 * std * std))
    return kernel / kernel.sum()


def convolution_matrix(kernel: np.ndarray, channels: int) -> np.ndarray:
    """Dense circular convolution ``(Ax)[c, n] = Σ_m g(n - m) x[c, m]``, the same on every channel."""
    h, w = kernel.shape
    one = np.zeros((h * w, h * w))
    for i in range(h):
        for j in range(w):
            for k in range(h):
                for l in range(w):
                    one[i * w + j, k * w + l] = kernel[(i - k) % h, (j - l) % w]
    return np.kron(np.eye(channels), one)


def hole_mask(h: int, w: int, side: int) -> np.ndarray:
    """``(H, W)`` mask, 0 on rows/columns ``[H//2 - s//2, H//2 - s//2 + s)`` (and the same for W), 1 elsewhere."""
    mask = np.ones((h, w))
    r0, c0 = h // 2 - side // 2, w // 2 - side // 2
    mask[r0:r0 + side, c0:c0 + side] = 0.0
    return mask


def forward_matrix(task: str, channels: int, h: int, w: int, *, hole: int | None = None,
                   blur_std: float = 1.0) -> np.ndarray:
    """The dense forward operator ``A`` of ``task`` on ``C×H×W`` images."""
    n = channels * h * w
    if task == "denoising":
        return np.eye(n)
    if task == "inpainting":
        return np.diag(np.tile(hole_mask(h, w, hole).ravel(), channels))
    if task == "deconvolution":
        return convolution_matrix(gaussian_kernel(h, w, blur_std), channels)
    raise ValueError(task)


@_one_blas_thread
def preinverse_matrix(A: np.ndarray, name: str, lam: float | None = None) -> np.ndarray:
    """``B`` = ``I``, ``Aᵀ``, ``A⁺`` (numpy pinv, singular values ≤ 1e-6·max dropped) or ``(AᵀA + λI)⁻¹Aᵀ``."""
    if name == "identity":
        return np.eye(A.shape[1])
    if name == "adjoint":
        return A.T.copy()
    if name == "pinv":
        return np.linalg.pinv(A, rcond=SV_RTOL)
    if name == "tikhonov":
        return np.linalg.solve(A.T @ A + lam * np.eye(A.shape[1]), A.T)
    raise ValueError(name)


# --------------------------------------------------------------------------------------------
# linear algebra helpers
# --------------------------------------------------------------------------------------------

def kept_eigen(cov: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(U_r, λ_r)``: eigenvectors/values of the PSD ``cov`` with ``λ > RANK_RTOL·λ_max`` (rank 0 if ``cov = 0``)."""
    cov = 0.5 * (cov + cov.T)
    lam, U = np.linalg.eigh(cov)
    top = lam.max() if lam.size else 0.0
    keep = lam > RANK_RTOL * top if top > 0 else np.zeros(lam.shape, bool)
    return U[:, keep], lam[keep]


def in_span(U: np.ndarray, v: np.ndarray, scale: float) -> bool:
    """Whether ``v`` lies in the column span of the orthonormal ``U``: ``‖v - UUᵀv‖ ≤ SUPPORT_RTOL·scale``."""
    residual = v - U @ (U.T @ v) if U.shape[1] else v
    return float(np.linalg.norm(residual)) <= SUPPORT_RTOL * scale


def logsumexp(a: np.ndarray, axis=None) -> np.ndarray:
    """``log Σ exp(a)`` (``-∞`` entries allowed; all ``-∞`` gives ``-∞``)."""
    m = np.max(a, axis=axis, keepdims=True)
    m = np.where(np.isfinite(m), m, 0.0)
    out = np.log(np.sum(np.exp(a - m), axis=axis, keepdims=True)) + m
    return out.squeeze(axis) if axis is not None else out.item()


def normalise_log(logw: np.ndarray) -> np.ndarray:
    """Weights ``exp(logw - logsumexp(logw))`` over the whole array."""
    return np.exp(logw - logsumexp(logw))


def _sigmas(sigma, count: int) -> np.ndarray:
    s = np.asarray(sigma, dtype=np.float64).reshape(-1)
    return np.broadcast_to(s, (count,)) if s.size == 1 else s


def _flat(batch: np.ndarray) -> np.ndarray:
    return np.asarray(batch, dtype=np.float64).reshape(batch.shape[0], -1)


def _generic_vector(n: int) -> np.ndarray:
    return np.random.default_rng(GENERIC_SEED).standard_normal(n)


# --------------------------------------------------------------------------------------------
# MMSE
# --------------------------------------------------------------------------------------------

@_one_blas_thread
def mmse_log_weights(train: np.ndarray, y: np.ndarray, A: np.ndarray, B: np.ndarray, sigma) -> np.ndarray:
    r"""Normalised ``log w_d`` ``(n, D)`` of the MMSE.

    ``w_d ∝ N(By; BAx_d, σ²BBᵀ) ∝ exp(-‖P(y - Ax_d)‖²/2σ²)`` with ``P = V_r V_rᵀ`` the orthogonal
    projector onto ``Im Bᵀ`` (right singular vectors of ``B`` with ``s > 1e-6·s_max``);
    ``‖P r‖ = ‖V_rᵀ r‖`` is taken on the residual ``r = y - Ax_d`` itself.
    """
    _, s, vt = np.linalg.svd(B)
    V = vt[s > SV_RTOL * s.max()].T  # (N, r)
    keys = _flat(train) @ A.T  # (D, N): A x_d
    out = []
    for yk, sk in zip(_flat(y), _sigmas(sigma, y.shape[0])):
        residual = yk[None, :] - keys  # (D, N) direct differences
        coords = residual @ V
        logw = -0.5 * np.sum(coords * coords, axis=1) / sk**2
        out.append(logw - logsumexp(logw))
    return np.stack(out)


def mmse(train: np.ndarray, y: np.ndarray, A: np.ndarray, B: np.ndarray, sigma) -> np.ndarray:
    """``x̂(y) = Σ_d w_d x_d`` (see :func:`mmse_log_weights`), shape of ``y``."""
    w = np.exp(mmse_log_weights(train, y, A, B, sigma))
    return (w @ _flat(train)).reshape(y.shape)


# --------------------------------------------------------------------------------------------
# E-MMSE
# --------------------------------------------------------------------------------------------

@_one_blas_thread
def emmse(train: np.ndarray, y: np.ndarray, A: np.ndarray, B: np.ndarray, sigma, *,
          generic_support: bool = True) -> np.ndarray:
    r"""``x̂(y) = Σ_{d,g} w_{d,g} T_g x_d``, ``w_{d,g} ∝ N(T_g^{-1}By; BAx_d, σ²BBᵀ)``.

    One eigendecomposition ``BBᵀ = UΛUᵀ`` serves every shift; the pseudo-determinant is common
    to all terms and cancels. A term is kept only if ``T_g^{-1}By - BAx_d ∈ Im BBᵀ``; since
    ``BAx_d ∈ Im B`` this is ``T_g^{-1}By ∈ Im B``, decided on ``B v`` for a generic ``v``
    (see module docstring). Exponent: ``-½‖Λ^{-1/2}Uᵀ(T_g^{-1}By - BAx_d)‖²/σ²``.
    """
    count, c, h, w = y.shape
    U, lam = kept_eigen(B @ B.T)
    keys = _flat(train) @ (B @ A).T  # (D, N): B A x_d
    shifts = [(gi, gj) for gi in range(h) for gj in range(w)]
    scale_ref = None
    if generic_support:
        bv = (B @ _generic_vector(B.shape[1])).reshape(c, h, w)
        scale_ref = float(np.linalg.norm(bv)) or 1.0
        allowed = np.array([in_span(U, np.roll(bv, (-gi, -gj), axis=(1, 2)).ravel(), scale_ref)
                            for gi, gj in shifts])
    x = np.asarray(train, dtype=np.float64)
    out = np.empty((count, c, h, w))
    for k, sk in enumerate(_sigmas(sigma, count)):
        by = (B @ _flat(y[k:k + 1])[0]).reshape(c, h, w)
        if not generic_support:
            ref = float(np.linalg.norm(by)) or 1.0
            allowed = np.array([in_span(U, np.roll(by, (-gi, -gj), axis=(1, 2)).ravel(), ref)
                                for gi, gj in shifts])
        z = np.stack([np.roll(by, (-gi, -gj), axis=(1, 2)).ravel() for gi, gj in shifts])  # (G, N)
        residual = (z[:, None, :] - keys[None, :, :]).reshape(-1, z.shape[1])  # (G·D, N) direct differences
        white = (residual @ U) / np.sqrt(lam)
        logw = (-0.5 * np.sum(white * white, axis=1) / sk**2).reshape(len(shifts), -1)  # (G, D)
        logw[~allowed] = -np.inf
        wts = normalise_log(logw)
        acc = np.zeros((c, h, w))
        for gidx, (gi, gj) in enumerate(shifts):
            if allowed[gidx]:
                acc += np.tensordot(wts[gidx], np.roll(x, (gi, gj), axis=(2, 3)), axes=(0, 0))
        out[k] = acc
    return out


# --------------------------------------------------------------------------------------------
# LE-MMSE, general rank-stratified definition (MATH.md case 3, paper Prop. B.5)
# --------------------------------------------------------------------------------------------

def patch_indices(c: int, h: int, w: int, patch: int) -> np.ndarray:
    """``(H·W, C·P²)`` flat indices of the circular ``P×P`` patch (all channels) centred at each pixel."""
    r = patch // 2
    idx = np.empty((h * w, c * patch * patch), dtype=np.int64)
    for i in range(h):
        for j in range(w):
            cols = [ch * h * w + ((i + a) % h) * w + (j + b) % w
                    for ch in range(c) for a in range(-r, r + 1) for b in range(-r, r + 1)]
            idx[i * w + j] = cols
    return idx


@dataclass
class LemmseDetails:
    """Per-pixel quantities of :func:`lemmse` (arrays ``(n, H, W)`` unless said otherwise)."""

    xhat: np.ndarray  # (n, C, H, W)
    patch_log_density: np.ndarray  # log((1/(D·H·W)) Σ_{winning stratum} N(z; μ, σ²Σ_n))
    patch_log_density_paper: np.ndarray  # log Σ_{winning stratum} exp(-½‖z - μ‖²_{Σ⁺}/σ²), no constants
    stratum_rank: np.ndarray  # rank of the winning stratum
    mass99_bounds: np.ndarray  # (n, H, W, 2): 99 %-mass count at fraction 0.99 ∓ 1e-9
    mass99_bounds_loose: np.ndarray  # (n, H, W, 2): the same at 0.99 ∓ 1e-5 (a float32 normaliser)
    mass99_near: np.ndarray  # keys whose log-weight lies within MASS_NEAR_LOG of the crossing key's
    source: np.ndarray  # image whose patches together hold ≥ 50 % of the weight, else -1
    source_margin: np.ndarray  # |largest image share - 0.5|
    single_patch_source: np.ndarray  # image owning one patch with ≥ 50 % of the weight, else -1
    single_patch_margin: np.ndarray  # |largest single weight - 0.5|
    weights: list  # per (k, n'): (D, H·W) weights, zero outside the winning stratum


def _apply_each(z: np.ndarray, U: np.ndarray) -> np.ndarray:
    """``out[q, s] = U[s]ᵀ z[q]`` for ``z`` ``(Q, F)`` and a stack ``U`` ``(S, F, r)``, as one product."""
    s, f, r = U.shape
    return (z @ U.transpose(1, 0, 2).reshape(f, s * r)).reshape(z.shape[0], s, r)


class _Geometry:
    """``Q_n = Π_n B``, ``Σ_n = Q_nQ_nᵀ`` and its kept eigenpairs at every position, grouped by rank."""

    def __init__(self, B: np.ndarray, shape: tuple[int, int, int], patch: int):
        c, h, w = shape
        self.idx = patch_indices(c, h, w, patch)
        eig = [kept_eigen(q @ q.T) for q in B[self.idx]]  # Q_n = B[idx[n]] (rows of B)
        self.rank = np.array([U.shape[1] for U, _ in eig])
        #: rank -> (positions, U (S, F, r), sqrt λ (S, r), log|Σ_n|₊ (S,))
        self.groups = {}
        for r in np.unique(self.rank):
            pos = np.flatnonzero(self.rank == r)
            U = np.stack([eig[n][0] for n in pos])
            lam = np.stack([eig[n][1] for n in pos])
            self.groups[int(r)] = (pos, U, np.sqrt(lam), np.log(lam).sum(axis=1))
        generic = (B @ _generic_vector(B.shape[1]))[self.idx]  # (H·W, F): Q_{n'} v
        scale = float(np.linalg.norm(generic, axis=1).max()) or 1.0
        self.generic_members = self.members(generic, scale)

    def members(self, z: np.ndarray, scale: float) -> dict:
        """``{rank: (H·W', S_r) bool}``: whether query ``z[n']`` lies in ``Im Σ_n`` for each ``n`` of the group."""
        out = {}
        for r, (pos, U, _, _) in self.groups.items():
            coef = _apply_each(z, U)  # (Q, S, r): U_nᵀ z
            back = np.matmul(coef.transpose(1, 0, 2), U.transpose(0, 2, 1))  # (S, Q, F): U_n U_nᵀ z
            residual = z[None, :, :] - back
            out[r] = (np.linalg.norm(residual, axis=2) <= SUPPORT_RTOL * scale).T
        return out

    @staticmethod
    def stratum(members: dict, q: int) -> tuple[int, np.ndarray]:
        """Lowest rank whose union of supports contains query ``q``, and the group-local member mask."""
        for r in sorted(members):
            mask = members[r][q]
            if mask.any():
                return r, mask
        raise AssertionError("a query always lies in its own position's support")


@_one_blas_thread
def lemmse_details(train: np.ndarray, y: np.ndarray, A: np.ndarray, B: np.ndarray, patch: int, sigma, *,
                   generic_support: bool = True, keep_weights: bool = False) -> LemmseDetails:
    r"""LE-MMSE by the rank-stratified definition, with the diagnostics of MATH.md.

    For every output pixel ``n'`` with ``z = Q_{n'} y``:

    * positions ``n`` are stratified by ``r_n = rank Σ_n``, ``Σ_n = Q_nQ_nᵀ``; the query belongs to
      the lowest-rank stratum whose union of supports ``∪ Im Σ_n`` contains it (decided on the
      generic ``Q_{n'}v`` unless ``generic_support=False``); positions of that stratum whose
      support does not contain it get weight 0;
    * within the stratum ``log N(z; μ, σ²Σ_n) = -½‖Λ_n^{-1/2}U_nᵀz - Λ_n^{-1/2}U_nᵀμ‖²/σ²
      - (r/2) log(2πσ²) - ½ log|Σ_n|₊`` with ``μ = Q_n A x_d`` (the whitened residual is formed
      as a difference and squared; rank 0 gives ``log N = 0``: equal weights);
    * ``x̂_{n'} = Σ_{d,n} w (x_d)_n`` (centre pixels, all channels).

    Diagnostics: ``patch_log_density = logsumexp(log N) - log(D·H·W)``; the paper's
    ``patch_log_density_paper = logsumexp(-½‖·‖²/σ²)`` of the same residuals without constants;
    the 99 %-mass count from the sorted cumulative sum (as intervals, see :class:`LemmseDetails`);
    the source image of a single key (weight ≥ 0.5) and of an image (summed share ≥ 0.5).
    """
    D, c, h, w = train.shape
    count = y.shape[0]
    geo = _Geometry(B, (c, h, w), patch)
    hw = h * w
    keys = (_flat(train) @ (B @ A).T)[:, geo.idx]  # (D, H·W, F): Q_n A x_d
    white_keys = {r: np.matmul(keys[:, pos].transpose(1, 0, 2), U).transpose(1, 0, 2) / sl[None] if r else None
                  for r, (pos, U, sl, _) in geo.groups.items()}  # (D, S_r, r)
    centres = np.asarray(train, dtype=np.float64).reshape(D, c, hw).transpose(0, 2, 1)  # (D, H·W, C)

    xhat = np.empty((count, hw, c))
    logp = np.empty((count, hw))
    paper = np.empty((count, hw))
    loose = np.empty((count, hw, 2), dtype=np.int64)
    near = np.empty((count, hw), dtype=np.int64)
    single_margin = np.empty((count, hw))
    srank = np.empty((count, hw), dtype=np.int64)
    mass = np.empty((count, hw, 2), dtype=np.int64)
    source = np.empty((count, hw), dtype=np.int64)
    margin = np.empty((count, hw))
    single = np.empty((count, hw), dtype=np.int64)
    kept = []
    for k, sk in enumerate(_sigmas(sigma, count)):
        z_all = (B @ _flat(y[k:k + 1])[0])[geo.idx]  # (H·W, F): Q_{n'} y
        if generic_support:
            members = geo.generic_members
        else:
            members = geo.members(z_all, float(np.linalg.norm(z_all, axis=1).max()) or 1.0)
        # Λ_n^{-1/2} U_nᵀ z_{n'} for every query n' and position n of each rank group: (H·W', S_r, r)
        white_z = {r: _apply_each(z_all, U) / sl[None] if r else None for r, (pos, U, sl, _) in geo.groups.items()}
        for q in range(hw):
            r, mask = geo.stratum(members, q)
            pos, _, _, logpdet = geo.groups[r]
            every = bool(mask.all())
            sel = pos if every else pos[mask]
            if r == 0:
                logn = logits = np.zeros((D, sel.size))
            else:
                zw = white_z[r][q] if every else white_z[r][q, mask]  # (S, r)
                kw = white_keys[r] if every else white_keys[r][:, mask]  # (D, S, r)
                diff = zw[None] - kw  # direct differences of the whitened vectors
                logits = -0.5 * np.sum(diff * diff, axis=2) / sk**2
                logn = logits - 0.5 * r * np.log(2 * np.pi * sk**2) - 0.5 * (logpdet if every else logpdet[mask])[None]
            paper[k, q] = logsumexp(logits)
            lse = logsumexp(logn)
            wts = np.exp(logn - lse)  # (D, S)
            xhat[k, q] = np.tensordot(wts, centres[:, sel], axes=((0, 1), (0, 1)))
            logp[k, q] = lse - np.log(D * hw)
            srank[k, q] = r
            ordered = np.sort(wts.ravel())[::-1]
            cum = np.cumsum(ordered)
            for out, eps in ((mass, 1e-9), (loose, 1e-5)):
                out[k, q, 0] = min(int(np.searchsorted(cum, 0.99 - eps)) + 1, cum.size)
                out[k, q, 1] = min(int(np.searchsorted(cum, 0.99 + eps)) + 1, cum.size)
            with np.errstate(divide="ignore"):
                logw = np.log(ordered)
                ends = logw[[loose[k, q, 0] - 1, loose[k, q, 1] - 1]]
            near[k, q] = int(np.sum((logw >= ends.min() - MASS_NEAR_LOG) & (logw <= ends.max() + MASS_NEAR_LOG)))
            share = wts.sum(axis=1)
            best = int(np.argmax(share))
            source[k, q] = best if share[best] >= 0.5 else -1
            margin[k, q] = abs(share[best] - 0.5)
            d1, s1 = np.unravel_index(int(np.argmax(wts)), wts.shape)
            single[k, q] = d1 if wts[d1, s1] >= 0.5 else -1
            single_margin[k, q] = abs(wts[d1, s1] - 0.5)
            if keep_weights:
                full = np.zeros((D, hw))
                full[:, sel] = wts
                kept.append(full)
    grid = (count, h, w)
    return LemmseDetails(
        xhat=xhat.transpose(0, 2, 1).reshape(count, c, h, w),
        patch_log_density=logp.reshape(grid), patch_log_density_paper=paper.reshape(grid),
        stratum_rank=srank.reshape(grid), mass99_bounds=mass.reshape(*grid, 2),
        mass99_bounds_loose=loose.reshape(*grid, 2), mass99_near=near.reshape(grid), source=source.reshape(grid),
        source_margin=margin.reshape(grid), single_patch_source=single.reshape(grid),
        single_patch_margin=single_margin.reshape(grid), weights=kept,
    )


def lemmse(train: np.ndarray, y: np.ndarray, A: np.ndarray, B: np.ndarray, patch: int, sigma, **kw) -> np.ndarray:
    """LE-MMSE output only (see :func:`lemmse_details`), shape of ``y``."""
    return lemmse_details(train, y, A, B, patch, sigma, **kw).xhat


# --------------------------------------------------------------------------------------------
# image log-density
# --------------------------------------------------------------------------------------------

@_one_blas_thread
def image_log_density(train: np.ndarray, y: np.ndarray, A: np.ndarray, sigma, *, paper: bool = False) -> np.ndarray:
    """``log((1/D) Σ_d N(y; Ax_d, σ²I))`` per measurement, ``(n,)``; with ``paper=True`` the paper's
    ``log Σ_d exp(-‖y - Ax_d‖²/2σ²)`` (no constants, no 1/D)."""
    keys = _flat(train) @ A.T
    n_dim = keys.shape[1]
    out = []
    for yk, sk in zip(_flat(y), _sigmas(sigma, y.shape[0])):
        residual = yk[None] - keys
        logits = -0.5 * np.sum(residual * residual, axis=1) / sk**2
        if paper:
            out.append(logsumexp(logits))
        else:
            out.append(logsumexp(logits - 0.5 * n_dim * np.log(2 * np.pi * sk**2)) - np.log(keys.shape[0]))
    return np.array(out)


def top_mass(logits: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The sorted log-weights ``(Q, K)`` of every row of ``logits (Q, K)``, largest first, and their
    cumulative weights ``(Q, K)``: one sort serves :func:`count_at` at every fraction."""
    logw = logits - np.logaddexp.reduce(logits, axis=1, keepdims=True)
    ordered = -np.sort(-logw, axis=1)
    return ordered, np.cumsum(np.exp(ordered), axis=1)


def count_at(cumulative: np.ndarray, fraction: float) -> np.ndarray:
    """The exact top-mass count ``k*`` per row — the fewest largest weights summing to at least
    ``fraction`` — from the cumulative weights of :func:`top_mass`."""
    return np.array([min(int(np.searchsorted(c, fraction)) + 1, c.size) for c in cumulative])


def mass_counts(logits: np.ndarray, fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """The exact top-mass count ``k*`` per row of ``logits (Q, K)`` (:func:`count_at`) and the sorted
    log-weights ``(Q, K)``."""
    ordered, cumulative = top_mass(logits)
    return count_at(cumulative, fraction), ordered
