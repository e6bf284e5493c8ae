"""Resizing shared by every format: always area filtering (a box filter), never interpolation."""

from __future__ import annotations

from PIL import Image


def resize_area(image: Image.Image, resolution: int) -> Image.Image:
    """`image` as a `resolution`-px square, each output pixel the mean of the input pixels it covers."""
    if image.size == (resolution, resolution):
        return image
    return image.resize((resolution, resolution), Image.Resampling.BOX)
