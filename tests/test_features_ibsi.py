"""medspark.features against the IBSI-1 digital phantom reference values.

The phantom is 5x4x4 voxels (nibabel axes x, y, z; 2 mm isotropic) with grey levels 1..6 used
as they are (IBSI: no discretisation). With ``binWidth=1`` pyradiomics' 0-aligned bins give back
exactly those levels, because the ROI minimum is 1 in the whole ROI and in every slice.

* Statistics / intensity histogram: IBSI computes them over the whole 3D ROI, so the ROI voxels
  of all slices are pooled into :func:`medspark.features.firstorder.statistics`. pyradiomics'
  ``Kurtosis`` is IBSI's excess kurtosis + 3.
* Texture: the CSV has "2D" values (features of each axial slice, averaged over slices; for
  GLCM/GLRLM also over the 4 in-plane directions), which is what :func:`extract` of each slice,
  averaged, computes. IBSI GLCM "joint variance" is pyradiomics ``SumSquares``, "sum variance"
  ``ClusterTendency``, "dissimilarity" ``DifferenceAverage``; NGLDM is pyradiomics' GLDM.

IBSI gives 3 significant digits, so values are compared after rounding to 3 significant digits.
"""

from __future__ import annotations

import csv
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from medspark.features import extract
from medspark.features.discretize import discretize
from medspark.features.firstorder import statistics as firstorder

DATA = Path(__file__).parent / "data" / "ibsi_digital_phantom"
TEXTURE = ("glcm", "glrlm", "glszm", "gldm", "ngtdm")

STATISTICS = {  # IBSI tag -> pyradiomics firstorder name
    "mean": "Mean", "var": "Variance", "skew": "Skewness", "kurt": "Kurtosis",
    "median": "Median", "min": "Minimum", "p10": "10Percentile", "p90": "90Percentile",
    "max": "Maximum", "iqr": "InterquartileRange", "range": "Range",
    "mad": "MeanAbsoluteDeviation", "rmad": "RobustMeanAbsoluteDeviation",
}
STAT_ONLY = {"energy": "Energy", "rms": "RootMeanSquared"}
HIST_ONLY = {"entropy": "Entropy", "uniformity": "Uniformity"}

TEXTURE_2D = {
    "cm_joint_max_2D_avg": "glcm_MaximumProbability", "cm_joint_avg_2D_avg": "glcm_JointAverage",
    "cm_joint_var_2D_avg": "glcm_SumSquares", "cm_joint_entr_2D_avg": "glcm_JointEntropy",
    "cm_diff_avg_2D_avg": "glcm_DifferenceAverage", "cm_diff_var_2D_avg": "glcm_DifferenceVariance",
    "cm_diff_entr_2D_avg": "glcm_DifferenceEntropy", "cm_sum_avg_2D_avg": "glcm_SumAverage",
    "cm_sum_var_2D_avg": "glcm_ClusterTendency", "cm_sum_entr_2D_avg": "glcm_SumEntropy",
    "cm_energy_2D_avg": "glcm_JointEnergy", "cm_contrast_2D_avg": "glcm_Contrast",
    "cm_dissimilarity_2D_avg": "glcm_DifferenceAverage", "cm_inv_diff_2D_avg": "glcm_Id",
    "cm_inv_diff_norm_2D_avg": "glcm_Idn", "cm_inv_diff_mom_2D_avg": "glcm_Idm",
    "cm_inv_diff_mom_norm_2D_avg": "glcm_Idmn", "cm_inv_var_2D_avg": "glcm_InverseVariance",
    "cm_corr_2D_avg": "glcm_Correlation", "cm_auto_corr_2D_avg": "glcm_Autocorrelation",
    "cm_clust_tend_2D_avg": "glcm_ClusterTendency", "cm_clust_shade_2D_avg": "glcm_ClusterShade",
    "cm_clust_prom_2D_avg": "glcm_ClusterProminence", "cm_info_corr1_2D_avg": "glcm_Imc1",
    "cm_info_corr2_2D_avg": "glcm_Imc2",
    "rlm_sre_2D_avg": "glrlm_ShortRunEmphasis", "rlm_lre_2D_avg": "glrlm_LongRunEmphasis",
    "rlm_lgre_2D_avg": "glrlm_LowGrayLevelRunEmphasis",
    "rlm_hgre_2D_avg": "glrlm_HighGrayLevelRunEmphasis",
    "rlm_srlge_2D_avg": "glrlm_ShortRunLowGrayLevelEmphasis",
    "rlm_srhge_2D_avg": "glrlm_ShortRunHighGrayLevelEmphasis",
    "rlm_lrlge_2D_avg": "glrlm_LongRunLowGrayLevelEmphasis",
    "rlm_lrhge_2D_avg": "glrlm_LongRunHighGrayLevelEmphasis",
    "rlm_glnu_2D_avg": "glrlm_GrayLevelNonUniformity",
    "rlm_glnu_norm_2D_avg": "glrlm_GrayLevelNonUniformityNormalized",
    "rlm_rlnu_2D_avg": "glrlm_RunLengthNonUniformity",
    "rlm_rlnu_norm_2D_avg": "glrlm_RunLengthNonUniformityNormalized",
    "rlm_r_perc_2D_avg": "glrlm_RunPercentage", "rlm_gl_var_2D_avg": "glrlm_GrayLevelVariance",
    "rlm_rl_var_2D_avg": "glrlm_RunVariance", "rlm_rl_entr_2D_avg": "glrlm_RunEntropy",
    "szm_sze_2D": "glszm_SmallAreaEmphasis", "szm_lze_2D": "glszm_LargeAreaEmphasis",
    "szm_lgze_2D": "glszm_LowGrayLevelZoneEmphasis",
    "szm_hgze_2D": "glszm_HighGrayLevelZoneEmphasis",
    "szm_szlge_2D": "glszm_SmallAreaLowGrayLevelEmphasis",
    "szm_szhge_2D": "glszm_SmallAreaHighGrayLevelEmphasis",
    "szm_lzlge_2D": "glszm_LargeAreaLowGrayLevelEmphasis",
    "szm_lzhge_2D": "glszm_LargeAreaHighGrayLevelEmphasis",
    "szm_glnu_2D": "glszm_GrayLevelNonUniformity",
    "szm_glnu_norm_2D": "glszm_GrayLevelNonUniformityNormalized",
    "szm_zsnu_2D": "glszm_SizeZoneNonUniformity",
    "szm_zsnu_norm_2D": "glszm_SizeZoneNonUniformityNormalized",
    "szm_z_perc_2D": "glszm_ZonePercentage", "szm_gl_var_2D": "glszm_GrayLevelVariance",
    "szm_zs_var_2D": "glszm_ZoneVariance", "szm_zs_entr_2D": "glszm_ZoneEntropy",
    "ngt_coarseness_2D": "ngtdm_Coarseness", "ngt_contrast_2D": "ngtdm_Contrast",
    "ngt_busyness_2D": "ngtdm_Busyness", "ngt_complexity_2D": "ngtdm_Complexity",
    "ngt_strength_2D": "ngtdm_Strength",
    "ngl_lde_2D": "gldm_SmallDependenceEmphasis", "ngl_hde_2D": "gldm_LargeDependenceEmphasis",
    "ngl_lgce_2D": "gldm_LowGrayLevelEmphasis", "ngl_hgce_2D": "gldm_HighGrayLevelEmphasis",
    "ngl_ldlge_2D": "gldm_SmallDependenceLowGrayLevelEmphasis",
    "ngl_ldhge_2D": "gldm_SmallDependenceHighGrayLevelEmphasis",
    "ngl_hdlge_2D": "gldm_LargeDependenceLowGrayLevelEmphasis",
    "ngl_hdhge_2D": "gldm_LargeDependenceHighGrayLevelEmphasis",
    "ngl_glnu_2D": "gldm_GrayLevelNonUniformity", "ngl_dcnu_2D": "gldm_DependenceNonUniformity",
    "ngl_dcnu_norm_2D": "gldm_DependenceNonUniformityNormalized",
    "ngl_gl_var_2D": "gldm_GrayLevelVariance", "ngl_dc_var_2D": "gldm_DependenceVariance",
    "ngl_dc_entr_2D": "gldm_DependenceEntropy",
    # pyradiomics drops GLDM "GrayLevelNonUniformityNormalized" as equal to firstorder Uniformity
    "ngl_glnu_norm_2D": "firstorder_Uniformity",
}

NOT_COMPARABLE = {  # vendored reference rows with no pyradiomics (hence medspark) feature
    "stat_medad", "stat_cov", "stat_qcod",
    "ih_mode", "ih_medad", "ih_cov", "ih_qcod",
    "ih_max_grad", "ih_max_grad_g", "ih_min_grad", "ih_min_grad_g",
    "ngl_dc_perc_2D", "ngl_dc_energy_2D",
}


def three_digits(value: float) -> float:
    return float(f"{value:.3g}")


@pytest.fixture(scope="module")
def phantom() -> tuple[np.ndarray, np.ndarray]:
    image = np.asarray(nib.load(DATA / "phantom.nii.gz").dataobj, dtype=np.float64)
    roi = np.asarray(nib.load(DATA / "mask.nii.gz").dataobj) == 1
    return image, roi


@pytest.fixture(scope="module")
def reference() -> dict[str, float]:
    with open(DATA / "ibsi_1_reference_values_digital_phantom.csv", encoding="utf-8") as f:
        return {row["tag"]: float(row["reference value"]) for row in csv.DictReader(f)}


def compare(ours: dict[str, float], reference: dict[str, float], mapping: dict[str, str],
            offsets: dict[str, float] | None = None) -> None:
    bad = []
    for tag, name in mapping.items():
        value = ours[name] + (offsets or {}).get(tag, 0.0)
        if three_digits(value) != reference[tag]:
            bad.append(f"{tag} ({name}): ours {value!r}, IBSI {reference[tag]!r}")
    assert not bad, "\n".join(bad)


def test_phantom_layout(phantom):
    image, roi = phantom
    assert image.shape == roi.shape == (5, 4, 4)
    assert nib.load(DATA / "phantom.nii.gz").header.get_zooms() == (2.0, 2.0, 2.0)
    assert set(np.unique(image[roi])) == {1.0, 3.0, 4.0, 6.0}
    for k in range(image.shape[2]):  # every slice's ROI starts at grey level 1
        assert image[:, :, k][roi[:, :, k]].min() == 1.0


def test_statistics_on_the_pooled_roi(phantom, reference):
    image, roi = phantom
    values = image[roi]
    ours = firstorder(values, discretize(values, bin_width=1), pixel_area=4.0)
    mapping = {f"stat_{k}": v for k, v in {**STATISTICS, **STAT_ONLY}.items()}
    compare(ours, reference, mapping, offsets={"stat_kurt": -3.0})


def test_intensity_histogram_on_the_pooled_roi(phantom, reference):
    image, roi = phantom
    levels = discretize(image[roi], bin_width=1)
    ours = firstorder(levels.astype(np.float64), levels)
    mapping = {f"ih_{k}": v for k, v in {**STATISTICS, **HIST_ONLY}.items()}
    compare(ours, reference, mapping, offsets={"ih_kurt": -3.0})


@pytest.mark.parametrize("prefix", ["cm_", "rlm_", "szm_", "ngt_", "ngl_"])
def test_texture_2d_averaged_over_slices(phantom, reference, prefix):
    image, roi = phantom
    per_slice = [extract(image[:, :, k].T, roi[:, :, k].T, spacing=(2.0, 2.0), binWidth=1,
                         families=("firstorder", *TEXTURE))
                 for k in range(image.shape[2])]
    averaged = {name: float(np.mean([s[name] for s in per_slice])) for name in per_slice[0]}
    compare(averaged, reference, {t: n for t, n in TEXTURE_2D.items() if t.startswith(prefix)})


def test_every_vendored_reference_row_is_compared_or_listed(reference):
    compared = ({f"stat_{k}" for k in {**STATISTICS, **STAT_ONLY}}
                | {f"ih_{k}" for k in {**STATISTICS, **HIST_ONLY}} | set(TEXTURE_2D))
    assert compared.isdisjoint(NOT_COMPARABLE)
    assert set(reference) == compared | NOT_COMPARABLE
