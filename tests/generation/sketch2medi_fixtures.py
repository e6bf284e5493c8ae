"""Shared pieces of the E / H / pipeline tests: a tiny bundle (random G and C) and tiny phantom pairs.

Imported by test_e4e.py, test_hyperstyle.py and test_pipeline.py (pytest puts this folder on sys.path).
"""

from __future__ import annotations

from pathlib import Path

import torch

from generation.bundle import save_network
from generation.moco import Embedder, EmbedderConfig
from generation.stylegan2 import Generator, GeneratorConfig

TINY = "tiny"
PAIR_COUNT = 8
W_AVG_SAMPLES = 256


def tiny_bundle(folder: Path, seed: int = 0) -> Path:
    """A bundle holding a random tiny G (with its mean w) and a random tiny C."""
    torch.manual_seed(seed)
    generator = Generator(GeneratorConfig.for_preset(TINY)).eval()
    generator.mapping.estimate_w_avg(W_AVG_SAMPLES, seed=seed)
    save_network(folder, "generator", generator, generator.config)
    embedder = Embedder(EmbedderConfig.for_preset(TINY)).eval()
    save_network(folder, "embedder", embedder, embedder.config)
    return folder


def tiny_pairs(folder: Path, count: int = PAIR_COUNT, seed: int = 0) -> tuple[Path, Path]:
    """`count` 32 px phantoms and their contour sketches: (dataset folder, sketch folder)."""
    from phantoms.dataset import generate_dataset
    from phantoms.preview import SketchStyle, write_sketch_folder

    dataset = generate_dataset(folder / "phantoms", count=count, size=32, seed=seed)
    sketches = folder / "contour"
    write_sketch_folder(dataset, sketches, SketchStyle.contour, seed=seed)
    return dataset, sketches
