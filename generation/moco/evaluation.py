"""How well C's neighbours predict an archive's labels, against raw pixels: the probe the training
loop runs each epoch, on any bundle's C and any labelled dataset, as one typed report.

`s2m evaluate-embedder` prints it; the API and the evaluation reuse it as it is.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from formats.errors import InputError
from generation.data import dataset_fingerprint, image_dir, list_images, native_side
from generation.moco.model import Embedder
from generation.moco.probe import ColumnReport, compare_with_raw_pixels, holdout_split, load_probe_set, probe_features
from generation.moco.readout import Readout
from generation.moco.readout_choice import ReadoutChoice, choose_readout

AUTO_READOUT = "auto"  # choose the read-out by leave-one-out k-NN on the bank


@dataclass(frozen=True)
class EmbedderReport:
    """What one evaluation of C measured, and on what."""

    data_fingerprint: str
    trained_on_fingerprint: str | None
    data_side: int
    embedder_side: int
    bank: int
    knn_k: int
    knn_temperature: float
    readout: Readout
    choice: ReadoutChoice | None  # set when the read-out was chosen here
    columns: list[ColumnReport]
    pooled: dict[str, float]  # MoCo's own pooled vector, for comparison

    @property
    def same_data(self) -> bool:
        return self.trained_on_fingerprint == self.data_fingerprint

    def as_record(self) -> dict[str, Any]:
        """The report as JSON-ready values."""
        readout = {"stage": self.readout.stage, "grid": self.readout.grid,
                   **({"bank_scores": self.choice.as_record()["bank_scores"]} if self.choice else {})}
        return {
            "data_fingerprint": self.data_fingerprint, "trained_on_fingerprint": self.trained_on_fingerprint,
            "bank": self.bank, "data_side": self.data_side, "embedder_side": self.embedder_side,
            "knn_k": self.knn_k, "knn_temperature": self.knn_temperature, "readout": readout, "pooled": self.pooled,
            "columns": [dict(dataclasses.asdict(c), margin=c.margin, clearly_beats_pixels=c.clearly_beats_pixels)
                        for c in self.columns],
        }

    def readout_record(self) -> dict[str, Any]:
        """How the read-out was chosen and what it scored here: what the bundle records beside it."""
        how = self.choice.as_record() if self.choice else {
            "stage": self.readout.stage, "grid": self.readout.grid, "selected_by": "evaluate-embedder --readout"}
        how["evaluated_on"] = {"data_fingerprint": self.data_fingerprint, "bank": self.bank, **{
            f"{c.column}/{key}": value for c in self.columns for key, value in
            (("embedding_knn", c.embedding_knn), ("pixel_linear", c.pixel_linear),
             ("margin_interval", list(c.margin_interval)))
        }}
        return how


def evaluate_embedder(
    embedder: Embedder, data: Path, columns: tuple[str, ...], readout: Readout | str | None = None,
    bank: int | None = None, queries: int | None = None, trained_on_fingerprint: str | None = None,
) -> EmbedderReport:
    """Probe `embedder` on the labelled dataset `data` with read-out `readout`.

    `readout`: None for the embedder's own, a `Readout`, or "auto" to choose one on the bank.
    `bank` / `queries` default to C's probe sizes.
    """
    config = embedder.config
    count = len(list_images(image_dir(data)))
    if count < 2:
        raise InputError(f"{data} holds {count} image(s); the probe needs a bank and queries")
    data_side = native_side(data)
    train_indices, holdout_indices = holdout_split(count, config.probe_holdout_fraction, config.seed)
    probe = load_probe_set(data, columns, train_indices, holdout_indices, data_side,
                           bank or config.probe_bank_size, queries or config.probe_query_size)
    choice = choose_readout(embedder, probe, config.knn_k, config.knn_temperature) if readout == AUTO_READOUT else None
    chosen = choice.readout if choice else readout if isinstance(readout, Readout) else config.readout
    embedder = embedder.with_readout(chosen)
    reports = compare_with_raw_pixels(embedder.describe, probe, config.knn_k, config.knn_temperature)
    pooled = probe_features(embedder.embed(probe.bank_images), embedder.embed(probe.query_images), probe, "pooled",
                            config.knn_k, config.knn_temperature)
    return EmbedderReport(
        data_fingerprint=dataset_fingerprint(data), trained_on_fingerprint=trained_on_fingerprint,
        data_side=data_side, embedder_side=config.resolution, bank=len(probe.bank_images), knn_k=config.knn_k,
        knn_temperature=config.knn_temperature, readout=chosen, choice=choice, columns=reports, pooled=pooled,
    )
