"""The sample's derived DICOM objects of a nodule series: an RT Structure Set of its contours
and a binary DICOM SEG of its mask, both referencing the CT slices by UID (and SEG by
position), so rasterising them gives back the generator's own masks.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.uid import CTImageStorage, RTStructureSetStorage, SegmentationStorage

from medspark.sample.dicom import base_dataset, coded, ds_number
from medspark.sample.people import uid_for
from medspark.sample.plan import SeriesPlan

# Detached Study Management SOP Class, which structure sets conventionally reference in the RT
# Referenced Study Sequence; retired, so pydicom.uid has no name for it
DETACHED_STUDY_MANAGEMENT = "1.2.840.10008.3.1.2.3.1"


def write_rtstruct(plan: SeriesPlan, path: Path) -> set[str]:
    """An RT Structure Set outlining the nodule (ROI "GTV-nodule") on every slice it cuts.

    Contours are the 0.5 iso-lines of the slice masks (skimage), in patient mm: a pixel's
    centre lies inside exactly when the pixel is in the mask, so rasterising the structure
    set gives back the generator's own masks.
    """
    from skimage.measure import find_contours

    sop, series = uid_for(plan.seed, "rt", plan.index, "sop"), uid_for(plan.seed, "rt",
                                                                       plan.index, "series")
    ds = base_dataset(plan.patient, plan.study, RTStructureSetStorage, sop, "RTSTRUCT", series,
                      904 + plan.index, "NODULE CONTOURS")
    ds.StructureSetLabel, ds.StructureSetDate = "NODULE", plan.study.date
    ds.StructureSetTime = plan.study.time
    masks = plan.mask()
    origin = -plan.patient.fov_mm / 2 + plan.spacing_mm / 2
    images, contours = [], []
    for k in range(plan.n_slices):
        ref = Dataset()
        ref.ReferencedSOPClassUID, ref.ReferencedSOPInstanceUID = CTImageStorage, plan.sop_uid(k)
        images.append(ref)
        padded = np.pad(masks[k].astype(float), 1)
        for line in find_contours(padded, 0.5) if masks[k].any() else []:
            rows, cols = line[:-1, 0] - 1, line[:-1, 1] - 1  # drop the repeated end point
            points = np.column_stack([origin + cols * plan.spacing_mm,
                                      origin + rows * plan.spacing_mm,
                                      np.full(len(rows), plan.z_mm(k))])
            item = Dataset()
            item.ContourImageSequence = Sequence([ref])
            item.ContourGeometricType = "CLOSED_PLANAR"
            item.NumberOfContourPoints = len(points)
            item.ContourData = [ds_number(v) for v in points.ravel()]
            contours.append(item)
    ref_series = Dataset()
    ref_series.SeriesInstanceUID, ref_series.ContourImageSequence = plan.uid, Sequence(images)
    ref_study = Dataset()
    ref_study.ReferencedSOPClassUID = DETACHED_STUDY_MANAGEMENT
    ref_study.ReferencedSOPInstanceUID = plan.study.uid
    ref_study.RTReferencedSeriesSequence = Sequence([ref_series])
    frame = Dataset()
    frame.FrameOfReferenceUID = plan.frame_uid
    frame.RTReferencedStudySequence = Sequence([ref_study])
    ds.ReferencedFrameOfReferenceSequence = Sequence([frame])
    roi = Dataset()
    roi.ROINumber, roi.ReferencedFrameOfReferenceUID = 1, plan.frame_uid
    roi.ROIName, roi.ROIGenerationAlgorithm = "GTV-nodule", "MANUAL"
    ds.StructureSetROISequence = Sequence([roi])
    roi_contour = Dataset()
    roi_contour.ReferencedROINumber, roi_contour.ROIDisplayColor = 1, [255, 0, 0]
    roi_contour.ContourSequence = Sequence(contours)
    ds.ROIContourSequence = Sequence([roi_contour])
    observation = Dataset()
    observation.ObservationNumber, observation.ReferencedROINumber = 1, 1
    observation.RTROIInterpretedType, observation.ROIInterpreter = "GTV", ""
    ds.RTROIObservationsSequence = Sequence([observation])
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return {sop, series}


def write_seg(plan: SeriesPlan, path: Path) -> set[str]:
    """A binary DICOM SEG of the nodule: one 1-bit frame per slice it cuts, each referencing
    its source slice by UID and by position."""
    from pydicom.pixels import pack_bits

    sop, series = uid_for(plan.seed, "seg", plan.index, "sop"), uid_for(plan.seed, "seg",
                                                                        plan.index, "series")
    ds = base_dataset(plan.patient, plan.study, SegmentationStorage, sop, "SEG", series,
                      905 + plan.index, "NODULE SEGMENTATION")
    masks = plan.mask()
    slices = [k for k in range(plan.n_slices) if masks[k].any()]
    ds.ImageType, ds.ContentLabel, ds.SegmentationType = ["DERIVED", "PRIMARY"], "NODULE", "BINARY"
    ds.FrameOfReferenceUID = plan.frame_uid
    ds.Rows = ds.Columns = plan.size
    ds.NumberOfFrames = len(slices)
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.PixelRepresentation, ds.LossyImageCompression = 0, "00"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 1, 1, 0
    segment = Dataset()
    segment.SegmentNumber, segment.SegmentLabel = 1, "nodule"
    segment.SegmentAlgorithmType = "MANUAL"
    segment.SegmentedPropertyCategoryCodeSequence = Sequence(
        [coded("49755003", "SCT", "Morphologically Altered Structure")])
    segment.SegmentedPropertyTypeCodeSequence = Sequence([coded("27925004", "SCT", "Nodule")])
    ds.SegmentSequence = Sequence([segment])
    measures, orientation = Dataset(), Dataset()
    measures.PixelSpacing = [ds_number(plan.spacing_mm)] * 2
    measures.SliceThickness = ds_number(plan.thickness_mm)
    orientation.ImageOrientationPatient = ["1", "0", "0", "0", "1", "0"]
    shared = Dataset()
    shared.PixelMeasuresSequence = Sequence([measures])
    shared.PlaneOrientationSequence = Sequence([orientation])
    ds.SharedFunctionalGroupsSequence = Sequence([shared])
    origin = ds_number(-plan.patient.fov_mm / 2 + plan.spacing_mm / 2)
    frames = []
    for k in slices:
        source = Dataset()
        source.ReferencedSOPClassUID = CTImageStorage
        source.ReferencedSOPInstanceUID = plan.sop_uid(k)
        derivation, ident, position, group = Dataset(), Dataset(), Dataset(), Dataset()
        derivation.SourceImageSequence = Sequence([source])
        ident.ReferencedSegmentNumber = 1
        position.ImagePositionPatient = [origin, origin, ds_number(plan.z_mm(k))]
        group.DerivationImageSequence = Sequence([derivation])
        group.SegmentIdentificationSequence = Sequence([ident])
        group.PlanePositionSequence = Sequence([position])
        frames.append(group)
    ds.PerFrameFunctionalGroupsSequence = Sequence(frames)
    ds.PixelData = pack_bits(masks[slices].astype(np.uint8))
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return {sop, series}
