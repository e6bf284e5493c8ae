"""pix2pix (Isola et al., CVPR 2017): the paper's strongest sketch-to-photo baseline (Table I)."""

from generation.pix2pix.config import Pix2PixConfig, Pix2PixTrainConfig
from generation.pix2pix.model import PatchDiscriminator, UNetGenerator

__all__ = ["Pix2PixConfig", "Pix2PixTrainConfig", "PatchDiscriminator", "UNetGenerator"]
