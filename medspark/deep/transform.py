"""What every image goes through before a network, in training and in prediction alike.

decode the plane row (`medspark.planes`) -> grey or 3 channels -> resize to the input size
(`medspark.preprocess.geometry.resize`, the pipeline's own step) -> per-image intensity scaling
-> (training only) one seeded `augment_once` variant -> (channels, size, size) float32.
The augmentation seed is `augment_seed(image_id, epoch, seed)`: the same image gets the same
variant in a given epoch whichever process reads it, and a different one every epoch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from medspark.image import to_gray
from medspark.planes import decode_plane
from medspark.preprocess.augment import augment_once, augment_seed
from medspark.preprocess.geometry import resize


@dataclass(frozen=True)
class ImageTransform:
    """Plane row -> network input; `augment` holds `augment_once` keyword arguments."""

    input_size: int
    channels: int = 1
    normalize: str = "minmax"
    augment: dict[str, Any] | None = None
    augment_seed: int = 0

    @classmethod
    def from_dict(cls, doc: dict[str, Any], augment: dict[str, Any] | None = None,
                  seed: int = 0) -> ImageTransform:
        return cls(int(doc["input_size"]), int(doc["channels"]), str(doc["normalize"]),
                   augment, seed)

    def array(self, image: np.ndarray, image_id: str = "", epoch: int | None = None
              ) -> np.ndarray:
        """(channels, size, size) float32 of an (H, W[, C]) image; `epoch` set: augmented."""
        img = image if image.ndim == 2 else image[:, :, 0] if image.shape[2] == 1 else None
        if img is None:  # colour: luma for 1 channel, as is for 3
            img = to_gray(image) if self.channels == 1 else image[:, :, :3]
        img = np.asarray(img, dtype=np.float32)
        img, _ = resize(img, None, size=self.input_size)
        img = scale_intensity(img, self.normalize)
        if self.augment is not None and epoch is not None:
            seed = augment_seed(image_id, epoch, self.augment_seed)
            img, _, _ = augment_once(img, None, seed, **self.augment)
            img = np.asarray(img, dtype=np.float32)
        if img.ndim == 2:
            img = img[:, :, None]
        if img.shape[2] != self.channels:
            img = np.repeat(img[:, :, :1], self.channels, axis=2)
        return np.ascontiguousarray(img.transpose(2, 0, 1))

    def row(self, row: dict[str, Any], epoch: int | None = None) -> np.ndarray:
        """Network input of a plane row (image_id, height, width, channels, dtype, data)."""
        return self.array(decode_plane(row), str(row.get("image_id", "")), epoch)

    def batch(self, heights, widths, channels, dtypes, datas, ids=None) -> np.ndarray:
        """(N, channels, size, size) float32 of N plane rows given column-wise."""
        n = len(datas)
        out = np.empty((n, self.channels, self.input_size, self.input_size), np.float32)
        for i in range(n):
            out[i] = self.row({"height": heights[i], "width": widths[i],
                               "channels": channels[i], "dtype": dtypes[i], "data": datas[i],
                               "image_id": "" if ids is None else ids[i]})
        return out


def scale_intensity(img: np.ndarray, how: str) -> np.ndarray:
    """Per-image scaling: minmax -> [0, 1], zscore -> mean 0 / sd 1; constant images -> 0."""
    if how == "none":
        return img
    finite = np.isfinite(img)
    if not finite.all():
        img = np.where(finite, img, 0.0).astype(np.float32)
    if how == "minmax":
        lo, hi = float(img.min()), float(img.max())
        return (img - lo) / (hi - lo) if hi > lo else np.zeros_like(img)
    if how == "zscore":
        mean, sd = float(img.mean()), float(img.std())
        return (img - mean) / sd if sd > 0 else np.zeros_like(img)
    raise ValueError(f"unknown normalize {how!r}")


def even_subsample(n: int, limit: int) -> np.ndarray:
    """Positions of at most `limit` of `n` ordered items, evenly spread, first and last kept."""
    if n <= limit:
        return np.arange(n)
    return np.unique(np.round(np.linspace(0, n - 1, limit)).astype(int))
