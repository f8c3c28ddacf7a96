"""Grey Level Co-occurrence Matrix features, pyradiomics 3.0.1 ``RadiomicsGLCM`` (2D).

One matrix per in-plane angle is counted with ``numpy.bincount`` on (centre, neighbour) pairs of
grey-level ranks, so it spans only the levels present in the ROI (pyradiomics counts 1..Ng and
deletes empty rows). It is optionally symmetrised and distance weighted, then normalised.
Features are computed per angle and averaged (``nanmean``), exactly as pyradiomics does; MCC
uses a partial symmetric eigensolver instead of pyradiomics' general ``eigvals``.
"""

from __future__ import annotations

import numpy as np
from scipy.linalg.lapack import dsyevr

from medspark.features.angles import angles as make_angles
from medspark.features.angles import shifted_pairs, weights
from medspark.features.settings import Settings
from medspark.features.texture import Plane, nanmean

NAMES = ("Autocorrelation", "ClusterProminence", "ClusterShade", "ClusterTendency", "Contrast",
         "Correlation", "DifferenceAverage", "DifferenceEntropy", "DifferenceVariance", "Id",
         "Idm", "Idmn", "Idn", "Imc1", "Imc2", "InverseVariance", "JointAverage", "JointEnergy",
         "JointEntropy", "MCC", "MaximumProbability", "SumAverage", "SumEntropy", "SumSquares")

# Features averaged over angles, in the order features() stacks them.
_PER_ANGLE = tuple(n for n in NAMES if n not in ("JointAverage", "MCC"))
EPS = np.spacing(1)
CLUSTER_TOL = 1e-7  # eps-free eigenvalues this close to lambda2 are corrected together
MAX_MATRIX = 2 ** 24  # matrix elements (~2000 grey levels x 4 angles) above which GLCM -> NaN


def matrix(plane: Plane, settings: Settings, spacing: tuple[float, float]) -> np.ndarray | None:
    """Normalised GLCMs, shape ``(angles, G, G)`` over the G present grey levels.

    Returns ``None`` when no angle fits in the ROI bounding box (pyradiomics raises then), when
    every angle is empty (pyradiomics drops them all and yields NaN), or when the matrices would
    exceed :data:`MAX_MATRIX` elements (G above ~2000: pyradiomics needs Ng >= G and its dense
    Ng x Ng x angles matrices and eigen-decompositions become impractical there).
    """
    offsets = make_angles(plane.shape, settings.distances, bidirectional=False)
    if len(offsets) == 0:
        return None
    g1 = plane.n_levels + 1
    if len(offsets) * g1 * g1 > MAX_MATRIX:
        return None
    # Pair codes centre * (G + 1) + neighbour over level ranks (0 = outside the ROI), in the
    # narrowest type that holds them; row/column 0 (pairs leaving the ROI) is dropped.
    code_type = next(t for t in (np.uint16, np.uint32, np.int64) if g1 * g1 <= np.iinfo(t).max)
    ranks = plane.ranks.astype(code_type)
    scale = code_type(g1)
    counts = np.empty((len(offsets), g1 - 1, g1 - 1))
    for a, (dy, dx) in enumerate(offsets):
        centre, neighbour = shifted_pairs(plane.shape, int(dy), int(dx))
        pair = ranks[centre] * scale + ranks[neighbour]
        counts[a] = np.bincount(pair.ravel(), minlength=g1 * g1).reshape(g1, g1)[1:, 1:]
    if settings.symmetricalGLCM:
        counts += counts.transpose(0, 2, 1)
    if settings.weightingNorm is not None:
        w = weights(offsets, spacing, settings.weightingNorm, exponential=True)
        counts = np.sum(counts * w[:, None, None], axis=0, keepdims=True)
    total = counts.sum(axis=(1, 2))
    if len(counts) > 1:
        nonempty = total != 0
        if not nonempty.any():
            return None
        counts, total = counts[nonempty], total[nonempty]
    total[total == 0] = np.nan
    return counts / total[:, None, None]


def _second_eigenvalue(p: np.ndarray, px: np.ndarray, py: np.ndarray) -> complex:
    """Second largest eigenvalue of pyradiomics' ``Q = sum_k p_ik p_jk / (px_i py_k + eps)``.

    Without ``eps``, ``Q = Dx^-1 P Dy^-1 P^T`` is similar to the symmetric ``B B^T`` with
    ``B = Dx^-1/2 P Dy^-1/2`` (largest eigenvalue 1), so a partial symmetric eigensolver
    (LAPACK ``dsyevr``, top pairs only) replaces the general ``eigvals`` pyradiomics calls. The
    ``eps`` correction comes from projecting the exact ``Q`` on those eigenvectors (two-sided
    Rayleigh-Ritz, error ~ eps**2), which also splits eigenvalues that coincide without ``eps``
    (a GLCM with separate groups of levels); the result matches pyradiomics to ~1e-15 relative.
    """
    rows, cols = px > 0, py > 0  # zero rows/columns of Q only add zero eigenvalues
    n = int(rows.sum())
    if n < 2:
        return 0.0
    p, px, py = p[np.ix_(rows, cols)], px[rows], py[cols]
    sqx = np.sqrt(px)
    b = p / sqx[:, None] / np.sqrt(py)[None, :]
    s = b @ b.T
    k = min(n, 3)
    w, vec, _, _, info = dsyevr(s, compute_v=1, range="I", il=n - k + 1, iu=n)
    if info != 0:
        raise np.linalg.LinAlgError(f"dsyevr failed ({info})")
    w, vec = w[:k], vec[:, :k]  # ascending: (lambda3,) lambda2, lambda1
    q = p / (px[:, None] * py[None, :] + EPS)
    lam3 = w[0] if k == 3 else -np.inf
    if w[-1] - w[-2] > CLUSTER_TOL and w[-2] - lam3 > CLUSTER_TOL:  # simple lambda2
        v = vec[:, -2]
        right, left = v / sqx, v * sqx
        return complex(left @ q @ (p.T @ right))
    if k < n and w[0] > w[-2] - CLUSTER_TOL:  # lambda2 may be clustered beyond lambda3
        w, vec = np.linalg.eigh(s)
    keep = w >= w[-2] - CLUSTER_TOL  # lambda1 and every eigenvalue clustered with lambda2
    right, left = vec[:, keep] / sqx[:, None], vec[:, keep] * sqx[:, None]
    lam = np.sort(np.linalg.eigvals(left.T @ q @ (p.T @ right)))  # complex, as pyradiomics
    return complex(lam[-2])


def _mcc(p: np.ndarray, px: np.ndarray, py: np.ndarray) -> float:
    """Maximal Correlation Coefficient: sqrt of Q's 2nd largest eigenvalue, mean over angles."""
    if p.shape[1] < 2:
        return 1.0
    if np.isnan(p).any():
        return np.nan  # pyradiomics' eigvals fails on an empty (NaN) matrix -> NaN
    lam = np.array([_second_eigenvalue(p[a], px[a], py[a]) for a in range(len(p))])
    if np.all(lam.imag == 0):
        lam = lam.real
        mcc = np.sqrt(np.maximum(lam, 0.0))
        mcc[lam < 0] = np.nan  # pyradiomics: sqrt of a (rounding-)negative eigenvalue is NaN
    else:  # pyradiomics takes the real part of the complex square roots' mean
        mcc = np.sqrt(lam).real
    return float(nanmean(mcc))


def features(p: np.ndarray, plane: Plane) -> dict[str, float]:
    """All GLCM features from normalised matrices ``p`` (angles, G, G).

    pyradiomics sums every moment over the full ``G x G`` matrix; here the ones that depend on
    ``i + j``, ``|i - j|``, ``i`` or ``j`` alone are taken from the (1-D) sum, difference and
    marginal distributions. The terms are the same, only grouped, so values agree to rounding.
    """
    ng = plane.ng
    g = plane.grey_levels.astype(np.float64)
    n_angles, n_levels = p.shape[0], p.shape[1]

    px = p.sum(axis=2)  # (A, G) over j
    py = p.sum(axis=1)  # (A, G) over i
    ux = px @ g
    uy = py @ g

    gi = np.repeat(plane.grey_levels, n_levels)
    gj = np.tile(plane.grey_levels, n_levels)
    width = 2 * ng + 1
    offset = (np.arange(n_angles) * width)[:, None]
    flat = p.ravel()
    sums = np.bincount((offset + (gi + gj)).ravel(), weights=flat,
                       minlength=n_angles * width).reshape(n_angles, width)[:, 2:]
    diffs = np.bincount((offset + np.abs(gi - gj)).ravel(), weights=flat,
                        minlength=n_angles * width).reshape(n_angles, width)[:, :ng]
    k_sum = np.arange(2, 2 * ng + 1, dtype=np.float64)
    k_diff = np.arange(0, ng, dtype=np.float64)
    k2 = k_diff * k_diff
    # Weights of the difference distribution: Contrast, Id, Idm, Idmn, Idn, InverseVariance.
    inv_var = np.zeros(ng)
    inv_var[1:] = 1 / k2[1:]
    diff_weights = np.stack([k2, 1 / (1 + k_diff), 1 / (1 + k2), 1 / (1 + k2 / ng ** 2),
                             1 / (1 + k_diff / ng), inv_var], axis=1)

    with np.errstate(invalid="ignore", divide="ignore"):
        hxy = -np.sum(p * np.log2(p + EPS), axis=(1, 2))
        dev_sum = k_sum - (ux + uy)[:, None]
        dev_sum2 = dev_sum * dev_sum  # products, not ** 3 / ** 4: numpy's generic pow is slow
        dev_x = g - ux[:, None]
        dev_y = g - uy[:, None]
        sum_sq = np.sum(px * dev_x * dev_x, axis=1)
        sigxy = np.sqrt(sum_sq) * np.sqrt(np.sum(py * dev_y * dev_y, axis=1))
        corm = np.sum(dev_x * np.matmul(p, dev_y[:, :, None])[:, :, 0], axis=1)
        corr = corm / (sigxy + EPS)
        corr[sigxy == 0] = 1

        diff_avg = diffs @ k_diff
        hx = -np.sum(px * np.log2(px + EPS), axis=1)
        hy = -np.sum(py * np.log2(py + EPS), axis=1)
        pxpy = px[:, :, None] * py[:, None, :]
        log_pxpy = np.log2(pxpy + EPS)
        hxy1 = -np.sum(p * log_pxpy, axis=(1, 2))
        hxy2 = -np.sum(pxpy * log_pxpy, axis=(1, 2))
        div = np.fmax(hx, hy)
        imc1 = np.where(div != 0, (hxy - hxy1) / div, 0.0)  # NaN div stays NaN
        imc2 = (1 - np.e ** (-2 * (hxy2 - hxy))) ** 0.5
        imc2[hxy2 == hxy] = 0
        by_diff = diffs @ diff_weights  # (A, 6)
        per_angle = np.stack([
            np.sum(np.matmul(p, g) * g, axis=1),  # Autocorrelation
            np.sum(sums * (dev_sum2 * dev_sum2), axis=1),  # ClusterProminence
            np.sum(sums * (dev_sum2 * dev_sum), axis=1),  # ClusterShade
            np.sum(sums * dev_sum2, axis=1),  # ClusterTendency
            by_diff[:, 0],  # Contrast
            corr,  # Correlation
            diff_avg,  # DifferenceAverage
            -np.sum(diffs * np.log2(diffs + EPS), axis=1),  # DifferenceEntropy
            np.sum(diffs * (k_diff - diff_avg[:, None]) ** 2, axis=1),  # DifferenceVariance
            by_diff[:, 1], by_diff[:, 2], by_diff[:, 3], by_diff[:, 4],  # Id, Idm, Idmn, Idn
            imc1, imc2,
            by_diff[:, 5],  # InverseVariance
            np.sum(p * p, axis=(1, 2)),  # JointEnergy
            hxy,  # JointEntropy
            np.max(p, axis=(1, 2)),  # MaximumProbability
            sums @ k_sum,  # SumAverage
            -np.sum(sums * np.log2(sums + EPS), axis=1),  # SumEntropy
            sum_sq,  # SumSquares
        ])
        means = nanmean(per_angle, axis=1)
        mcc = _mcc(p, px, py)
    out = dict(zip(_PER_ANGLE, means.tolist(), strict=True))
    out["JointAverage"] = float(np.mean(ux))
    out["MCC"] = mcc
    return {name: out[name] for name in NAMES}


def compute(plane: Plane, settings: Settings, spacing: tuple[float, float]) -> dict[str, float]:
    """GLCM features of ``plane``; all NaN when no angle fits or every angle is empty."""
    p = matrix(plane, settings, spacing)
    if p is None:
        return dict.fromkeys(NAMES, np.nan)
    return features(p, plane)
