"""The DICOM pixel module both writers use (the archive's phantom photographs and the service's
synthetic Secondary Captures): 8-bit RGB, uncompressed, interleaved, as ingest decodes it."""

from __future__ import annotations

from typing import Any

import numpy as np


def set_rgb_pixels(dataset: Any, image: np.ndarray) -> None:
    """Write uint8 [R, C, 3] `image` into a pydicom `dataset` as its pixel data and image pixel module."""
    dataset.SamplesPerPixel = 3
    dataset.PhotometricInterpretation = "RGB"
    dataset.PlanarConfiguration = 0
    dataset.Rows, dataset.Columns = int(image.shape[0]), int(image.shape[1])
    dataset.BitsAllocated = dataset.BitsStored = 8
    dataset.HighBit = 7
    dataset.PixelRepresentation = 0
    dataset.PixelData = np.ascontiguousarray(image).tobytes()
