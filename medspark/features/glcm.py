r"""Grey Level Co-occurrence Matrix features, pyradiomics 3.0.1 ``RadiomicsGLCM`` (2D).

Definition: :math:`P(i,j)` counts the pairs of ROI pixels at an in-plane offset (an "angle" at
one of the ``distances``; 4 for distance 1) with grey levels :math:`i` and :math:`j`, plus its
transpose when ``symmetricalGLCM``; one matrix per angle (summed with weights when
``weightingNorm`` is set), normalised to :math:`p(i,j) = P(i,j) / \sum P`. Every feature is
computed per angle and averaged over the angles. Notation: :math:`N_g` the largest grey level
in the ROI, :math:`p_x(i) = \sum_j p(i,j)` and :math:`p_y(j) = \sum_i p(i,j)` the marginals
with means :math:`\mu_x, \mu_y` and standard deviations :math:`\sigma_x, \sigma_y`,
:math:`p_{x+y}(k) = \sum_{i+j=k} p(i,j)` and :math:`p_{x-y}(k) = \sum_{|i-j|=k} p(i,j)`,
:math:`HX, HY` the entropies of :math:`p_x, p_y`, :math:`HXY = -\sum p(i,j)\log_2(p(i,j)+\epsilon)`,
:math:`HXY1 = -\sum p(i,j)\log_2(p_x(i)p_y(j)+\epsilon)`,
:math:`HXY2 = -\sum p_x(i)p_y(j)\log_2(p_x(i)p_y(j)+\epsilon)`.

``Autocorrelation``
    :math:`\sum_{i,j} p(i,j)\,ij`: fineness and coarseness of the texture.
``ClusterProminence``
    :math:`\sum_{i,j} (i+j-\mu_x-\mu_y)^4 p(i,j)`: skewness and asymmetry of the GLCM.
``ClusterShade``
    :math:`\sum_{i,j} (i+j-\mu_x-\mu_y)^3 p(i,j)`: skewness and uniformity of the GLCM.
``ClusterTendency``
    :math:`\sum_{i,j} (i+j-\mu_x-\mu_y)^2 p(i,j)`: groupings of pixels with similar levels.
``Contrast``
    :math:`\sum_{i,j} (i-j)^2 p(i,j)`: local intensity variation.
``Correlation``
    :math:`(\sum_{i,j} p(i,j)\,ij - \mu_x\mu_y) / (\sigma_x\sigma_y)` (1 when flat): linear
    dependency of grey levels on those of their neighbours.
``DifferenceAverage``
    :math:`DA = \sum_k k\,p_{x-y}(k)`: how much neighbouring levels differ on average.
``DifferenceEntropy``
    :math:`-\sum_k p_{x-y}(k)\log_2(p_{x-y}(k)+\epsilon)`: randomness of the differences.
``DifferenceVariance``
    :math:`\sum_k (k-DA)^2 p_{x-y}(k)`: heterogeneity of the differences.
``Id``, ``Idn``
    :math:`\sum_k p_{x-y}(k)/(1+k)` and :math:`\sum_k p_{x-y}(k)/(1+k/N_g)`: inverse
    difference (normalised): local homogeneity.
``Idm``, ``Idmn``
    :math:`\sum_k p_{x-y}(k)/(1+k^2)` and :math:`\sum_k p_{x-y}(k)/(1+k^2/N_g^2)`: inverse
    difference moment (normalised): local homogeneity, weighting large differences less.
``Imc1``
    :math:`(HXY - HXY1)/\max(HX, HY)`: informational measure of correlation.
``Imc2``
    :math:`\sqrt{1 - e^{-2(HXY2 - HXY)}}`: informational measure of correlation (0..1).
``InverseVariance``
    :math:`\sum_{k \ge 1} p_{x-y}(k)/k^2`.
``JointAverage``
    :math:`\mu_x = \sum_{i,j} p(i,j)\,i`: the mean grey level of the pairs.
``JointEnergy``
    :math:`\sum_{i,j} p(i,j)^2`: homogeneity (angular second moment).
``JointEntropy``
    :math:`HXY`: randomness of the pairs.
``MCC``
    :math:`\sqrt{\lambda_2}` of :math:`Q(i,j) = \sum_k p(i,k)p(j,k)/(p_x(i)p_y(k)+\epsilon)`:
    maximal correlation coefficient, the complexity of the texture.
``MaximumProbability``
    :math:`\max p(i,j)`: the most frequent pair.
``SumAverage``
    :math:`\sum_k k\,p_{x+y}(k)`.
``SumEntropy``
    :math:`-\sum_k p_{x+y}(k)\log_2(p_{x+y}(k)+\epsilon)`.
``SumSquares``
    :math:`\sum_{i,j} (i-\mu_x)^2 p(i,j)`: spread of the pairs about the mean (joint variance).

How: one matrix per angle is counted with ``numpy.bincount`` on (centre, neighbour) pairs of
grey-level ranks, so it spans only the G levels present in the ROI (pyradiomics counts 1..Ng and
deletes empty rows); MCC uses a partial symmetric eigensolver instead of pyradiomics' general
``eigvals``. The sum and difference distributions are taken over the values of
:math:`i+j` and :math:`|i-j|` that occur, so nothing is sized by :math:`N_g`.

Memory: the matrices take 8 G**2 bytes per angle and the features a few G x G temporaries
(:func:`matrix_bytes`); above the context's ``max_matrix_bytes`` every GLCM feature is NaN with
an ``over_matrix_budget`` warning (G above ~1600 at distance 1 with the default 256 MiB).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from scipy.linalg.lapack import dsyevr

from medspark.features.angles import angles as make_angles
from medspark.features.angles import shifted_pairs, weights
from medspark.features.settings import Settings
from medspark.features.texture import EPS, Plane, nanmean

if TYPE_CHECKING:
    from medspark.features.context import Context

NAMES = ("Autocorrelation", "ClusterProminence", "ClusterShade", "ClusterTendency", "Contrast",
         "Correlation", "DifferenceAverage", "DifferenceEntropy", "DifferenceVariance", "Id",
         "Idm", "Idmn", "Idn", "Imc1", "Imc2", "InverseVariance", "JointAverage", "JointEnergy",
         "JointEntropy", "MCC", "MaximumProbability", "SumAverage", "SumEntropy", "SumSquares")

# Features averaged over angles (JointAverage and MCC are not: see features()).
_PER_ANGLE = tuple(n for n in NAMES if n not in ("JointAverage", "MCC"))
CLUSTER_TOL = 1e-7  # eps-free eigenvalues this close to lambda2 are corrected together
CHUNK_CELLS = 1 << 18  # matrix cells whose feature temporaries are computed at once
WORK_ARRAYS = 8  # G x G (or chunk-sized) 8-byte arrays alive besides the matrices (measured)


def matrix_bytes(n_angles: int, n_levels: int, weighted: bool = False) -> int:
    """Peak bytes :func:`matrix` and :func:`features` allocate for ``n_angles`` GLCMs over
    ``n_levels`` grey levels (summed into one when ``weighted``), beyond plane-sized arrays:
    an upper bound, known before anything is allocated (checked against ``tracemalloc`` in
    ``tests/test_features_budget.py``)."""
    cells = n_levels * n_levels
    chunk = min((1 if weighted else n_angles) * cells, max(cells, CHUNK_CELLS))
    return 8 * (n_angles * cells + WORK_ARRAYS * chunk)


def _chunks(p: np.ndarray) -> list[np.ndarray]:
    """``p`` (angles, G, G) as views of a few angles each, at most :data:`CHUNK_CELLS` cells
    (or one angle): the unit of work whose temporaries are allocated at once."""
    step = max(1, CHUNK_CELLS // (p.shape[1] * p.shape[2]))
    return [p[a:a + step] for a in range(0, len(p), step)]


def matrix(plane: Plane, settings: Settings, spacing: tuple[float, float],
           offsets: np.ndarray) -> np.ndarray | None:
    """Normalised GLCMs, shape ``(angles, G, G)`` over the G present grey levels, for the
    in-plane ``offsets``; ``None`` when every angle is empty (pyradiomics drops them all and
    yields NaN). Symmetrising, weighting and normalising work in place, angle by angle."""
    g1 = plane.n_levels + 1
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
        for chunk in _chunks(counts):  # numpy copies the overlapping operand first
            chunk += chunk.transpose(0, 2, 1)
    if settings.weightingNorm is not None:
        w = weights(offsets, spacing, settings.weightingNorm, exponential=True)
        summed = counts[0] * w[0]
        for a in range(1, len(counts)):  # the same additions, in the same order, as np.sum
            summed += counts[a] * w[a]
        counts = summed[None]
    total = counts.sum(axis=(1, 2))
    if len(counts) > 1 and not total.all():
        nonempty = total != 0
        if not nonempty.any():
            return None
        counts, total = counts[nonempty], total[nonempty]
    total[total == 0] = np.nan
    counts /= total[:, None, None]
    return counts


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
    del b
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


def _support(k: np.ndarray, top: int) -> tuple[np.ndarray, np.ndarray]:
    """``(values, index)``: the values the integer array ``k`` (0..top) may take and the index
    of each element among them: 0..top when that range is small, else only those that occur."""
    k = k.ravel()
    if top < max(1 << 16, 4 * k.size):
        return np.arange(top + 1, dtype=np.float64), k
    values, index = np.unique(k, return_inverse=True)
    return values.astype(np.float64), index.reshape(-1)


def _distribution(p: np.ndarray, index: np.ndarray, width: int) -> np.ndarray:
    """Per angle of ``p`` (c, G, G), the sums of ``p`` over the cells of each ``index``."""
    offset = (np.arange(len(p)) * width)[:, None]
    return np.bincount((offset + index).ravel(), weights=p.ravel(),
                       minlength=len(p) * width).reshape(len(p), width)


def _per_angle(p: np.ndarray, px: np.ndarray, py: np.ndarray, g: np.ndarray, ng: int,
               sum_k: tuple[np.ndarray, np.ndarray], diff_k: tuple[np.ndarray, np.ndarray]
               ) -> dict[str, np.ndarray]:
    """The features averaged over angles, for the angles of ``p`` (c, G, G), by name.

    pyradiomics sums every moment over the full ``G x G`` matrix; here the ones that depend on
    ``i + j``, ``|i - j|``, ``i`` or ``j`` alone are taken from the (1-D) sum, difference and
    marginal distributions. The terms are the same, only grouped, so values agree to rounding.
    """
    k_sum, k_diff = sum_k[0], diff_k[0]
    sums = _distribution(p, sum_k[1], len(k_sum))
    diffs = _distribution(p, diff_k[1], len(k_diff))
    ux, uy = px @ g, py @ g
    k2 = k_diff * k_diff
    inv_var = np.divide(1.0, k2, out=np.zeros_like(k2), where=k2 > 0)
    # Weights of the difference distribution: Contrast, Id, Idm, Idmn, Idn, InverseVariance.
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
        log_pxpy = pxpy + EPS
        np.log2(log_pxpy, out=log_pxpy)
        hxy1 = -np.sum(p * log_pxpy, axis=(1, 2))
        hxy2 = -np.sum(pxpy * log_pxpy, axis=(1, 2))
        del pxpy, log_pxpy
        div = np.fmax(hx, hy)
        imc2 = (1 - np.e ** (-2 * (hxy2 - hxy))) ** 0.5
        imc2[hxy2 == hxy] = 0
        by_diff = diffs @ diff_weights  # (c, 6)
        return {
            "Autocorrelation": np.sum(np.matmul(p, g) * g, axis=1),
            "ClusterProminence": np.sum(sums * (dev_sum2 * dev_sum2), axis=1),
            "ClusterShade": np.sum(sums * (dev_sum2 * dev_sum), axis=1),
            "ClusterTendency": np.sum(sums * dev_sum2, axis=1),
            "Contrast": by_diff[:, 0],
            "Correlation": corr,
            "DifferenceAverage": diff_avg,
            "DifferenceEntropy": -np.sum(diffs * np.log2(diffs + EPS), axis=1),
            "DifferenceVariance": np.sum(diffs * (k_diff - diff_avg[:, None]) ** 2, axis=1),
            "Id": by_diff[:, 1],
            "Idm": by_diff[:, 2],
            "Idmn": by_diff[:, 3],
            "Idn": by_diff[:, 4],
            "Imc1": np.where(div != 0, (hxy - hxy1) / div, 0.0),  # NaN div stays NaN
            "Imc2": imc2,
            "InverseVariance": by_diff[:, 5],
            "JointEnergy": np.sum(p * p, axis=(1, 2)),
            "JointEntropy": hxy,
            "MaximumProbability": np.max(p, axis=(1, 2)),
            "SumAverage": sums @ k_sum,
            "SumEntropy": -np.sum(sums * np.log2(sums + EPS), axis=1),
            "SumSquares": sum_sq,
        }


def features(p: np.ndarray, plane: Plane) -> dict[str, float]:
    """All GLCM features from normalised matrices ``p`` (angles, G, G), averaged over angles
    (``nanmean``, as pyradiomics); the per-angle work goes in chunks of angles so that its
    temporaries stay within a few G x G arrays."""
    ng, gl = plane.ng, plane.grey_levels
    g = gl.astype(np.float64)
    px, py = p.sum(axis=2), p.sum(axis=1)  # (A, G) over j, over i
    sum_k = _support(gl[:, None] + gl[None, :], 2 * ng)
    diff_k = _support(np.abs(gl[:, None] - gl[None, :]), ng - 1)
    chunks, start = [], 0
    for chunk in _chunks(p):
        end = start + len(chunk)
        chunks.append(_per_angle(chunk, px[start:end], py[start:end], g, ng, sum_k, diff_k))
        start = end
    per_angle = np.stack([chunks[0][name] if len(chunks) == 1 else
                          np.concatenate([c[name] for c in chunks]) for name in _PER_ANGLE])
    del sum_k, diff_k, chunks  # G x G index arrays: free them before MCC's own
    with np.errstate(invalid="ignore", divide="ignore"):
        out = dict(zip(_PER_ANGLE, nanmean(per_angle, axis=1).tolist(), strict=True))
        out["JointAverage"] = float(np.mean(px @ g))
        out["MCC"] = _mcc(p, px, py)
    return {name: out[name] for name in NAMES}


def compute(ctx: Context) -> dict[str, float]:
    """GLCM features of the context's plane; all NaN when no angle fits in the ROI bounding box
    (pyradiomics raises there), when every angle is empty, or over the memory budget."""
    plane, settings = ctx.plane, ctx.settings
    offsets = make_angles(plane.shape, settings.distances, bidirectional=False)
    need = matrix_bytes(len(offsets), plane.n_levels, settings.weightingNorm is not None)
    if len(offsets) == 0 or not ctx.allow("glcm", need):
        return dict.fromkeys(NAMES, np.nan)
    p = matrix(plane, settings, ctx.spacing, offsets)
    if p is None:
        return dict.fromkeys(NAMES, np.nan)
    return features(p, plane)
