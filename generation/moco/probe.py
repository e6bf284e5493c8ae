"""Probes that turn an embedding's quality into a number: k-NN on C, linear on raw pixels.

Labels (e.g. diagnosis or tonsil grade) come from the dataset's `metadata.csv`; the probe
queries are a held-out split that C never trained on.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F

from generation.data import image_dir, image_to_tensor, list_images, load_rgb

METADATA_FILE = "metadata.csv"


def read_labels(dataset: Path, column: str) -> dict[str, str]:
    """Image stem -> value of `column` in the dataset's metadata.csv."""
    path = Path(dataset) / METADATA_FILE
    if not path.exists():
        raise FileNotFoundError(f"no {METADATA_FILE} in {dataset}: the probe needs labelled images")
    with path.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    if not rows or column not in rows[0] or "file" not in rows[0]:
        raise ValueError(f"{path} needs the columns 'file' and {column!r} (has {sorted(rows[0]) if rows else []})")
    return {Path(row["file"]).stem: row[column] for row in rows}


def holdout_split(count: int, fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """A seeded split of range(count) into (train indices, held-out indices), each sorted."""
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"holdout fraction must lie in (0, 1), got {fraction}")
    order = torch.randperm(count, generator=torch.Generator().manual_seed(seed)).tolist()
    held = max(1, int(round(count * fraction)))
    return sorted(order[held:]), sorted(order[:held])


@dataclass(frozen=True)
class ProbeSet:
    """Labelled images: a bank (from the training split) and queries (held out), per label column."""

    bank_images: torch.Tensor  # [Nb, 3, R, R] in [-1, 1]
    query_images: torch.Tensor  # [Nq, 3, R, R]
    bank_labels: dict[str, torch.Tensor]  # column -> [Nb] class ids
    query_labels: dict[str, torch.Tensor]  # column -> [Nq] class ids
    classes: dict[str, list[str]]  # column -> class names

    def chance(self, column: str) -> float:
        """Accuracy of always answering the most frequent bank class."""
        majority = torch.bincount(self.bank_labels[column], minlength=len(self.classes[column])).argmax()
        return accuracy(self.query_labels[column], int(majority))


def load_probe_set(
    dataset: Path, columns: tuple[str, ...], train_indices: list[int], holdout_indices: list[int],
    resolution: int, bank_size: int, query_size: int,
) -> ProbeSet:
    """Read up to `bank_size` training and `query_size` held-out images with their labels."""
    paths = list_images(image_dir(dataset))
    bank_paths = [paths[i] for i in train_indices[:bank_size]]
    query_paths = [paths[i] for i in holdout_indices[:query_size]]
    bank_labels, query_labels, classes = {}, {}, {}
    for column in columns:
        labels = read_labels(dataset, column)
        missing = [p.name for p in bank_paths + query_paths if p.stem not in labels]
        if missing:
            raise ValueError(f"{len(missing)} images have no {column!r} label in metadata.csv (first: {missing[0]})")
        classes[column] = sorted({labels[p.stem] for p in bank_paths + query_paths})
        class_id = {name: i for i, name in enumerate(classes[column])}
        bank_labels[column] = torch.tensor([class_id[labels[p.stem]] for p in bank_paths], dtype=torch.long)
        query_labels[column] = torch.tensor([class_id[labels[p.stem]] for p in query_paths], dtype=torch.long)

    def images(selection: list[Path]) -> torch.Tensor:
        return torch.stack([image_to_tensor(load_rgb(p, resolution)) for p in selection])

    return ProbeSet(images(bank_paths), images(query_paths), bank_labels, query_labels, classes)


def knn_predict(
    bank: torch.Tensor, bank_labels: torch.Tensor, queries: torch.Tensor, k: int, temperature: float, num_classes: int,
) -> torch.Tensor:
    """Weighted k-NN class ids [Nq] (Wu et al. 2018, as in MoCo's CIFAR demo) on L2-normalised features.

    bank [Nb, D], queries [Nq, D]: each neighbour votes for its class with exp(cos / temperature).
    """
    bank = F.normalize(bank.float(), dim=1)
    queries = F.normalize(queries.float(), dim=1)
    return weighted_vote(queries @ bank.t(), bank_labels, k, temperature, num_classes)


def weighted_vote(similarity: torch.Tensor, bank_labels: torch.Tensor, k: int, temperature: float, num_classes: int) -> torch.Tensor:
    """Class ids [Nq] from cosine similarities [Nq, Nb]: the k nearest vote with exp(cos / temperature).

    Entries set to -inf never vote (leave-one-out on the bank itself).
    """
    top, neighbours = similarity.topk(min(k, similarity.shape[1]), dim=1)  # [Nq, k]
    votes = torch.zeros(similarity.shape[0], num_classes)
    votes.scatter_add_(1, bank_labels[neighbours], (top / temperature).exp())
    return votes.argmax(dim=1)


def span_coordinates(train_x: torch.Tensor, test_x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Coordinates in an orthonormal basis of the span of the training rows (when D > N).

    An L2-regularised linear model's weights lie in that span (representer theorem), so the
    probe is unchanged while each step costs N instead of D per sample (12288 -> 2000 at 64 px).
    """
    gram = (train_x @ train_x.t()).double()  # [N, N]
    eigenvalues, eigenvectors = torch.linalg.eigh(gram)
    keep = eigenvalues > eigenvalues.max() * torch.finfo(torch.float32).eps
    basis = (train_x.t().double() @ eigenvectors[:, keep] / eigenvalues[keep].sqrt()).float()  # [D, r]
    return train_x @ basis, test_x @ basis


def linear_probe_predict(
    train_x: torch.Tensor, train_y: torch.Tensor, test_x: torch.Tensor, test_y: torch.Tensor,
    num_classes: int, weight_decays: tuple[float, ...], iterations: int,
) -> torch.Tensor:
    """Class ids [Nq] of multinomial logistic regression on standardised features (L-BFGS, full batch).

    Of the models fitted with each of `weight_decays`, the one most accurate on the test labels
    answers: an optimistic baseline, so that an embedding that beats it beats every setting tried.
    """
    mean, std = train_x.mean(0), train_x.std(0).clamp_min(1e-6)
    train_x, test_x = (train_x - mean) / std, (test_x - mean) / std
    if train_x.shape[1] > train_x.shape[0]:
        train_x, test_x = span_coordinates(train_x, test_x)
    best, best_correct = torch.zeros(len(test_x), dtype=torch.long), -1
    for weight_decay in weight_decays:
        linear = torch.nn.Linear(train_x.shape[1], num_classes)
        optimizer = torch.optim.LBFGS(linear.parameters(), max_iter=iterations, line_search_fn="strong_wolfe")

        def closure() -> torch.Tensor:
            optimizer.zero_grad()
            loss = F.cross_entropy(linear(train_x), train_y) + weight_decay * linear.weight.pow(2).sum()
            loss.backward()
            return loss

        optimizer.step(closure)
        with torch.no_grad():
            predictions = linear(test_x).argmax(1)
        correct = int((predictions == test_y).sum())
        if correct > best_correct:
            best, best_correct = predictions, correct
    return best


def accuracy(predictions: torch.Tensor, labels: torch.Tensor | int) -> float:
    """Share of predictions equal to the labels."""
    return float((predictions == labels).float().mean())


def per_class_recall(predictions: torch.Tensor, labels: torch.Tensor, num_classes: int) -> list[float | None]:
    """Share of each class's queries predicted as that class (None for a class without queries)."""
    recalls: list[float | None] = []
    for class_id in range(num_classes):
        members = labels == class_id
        recalls.append(accuracy(predictions[members], class_id) if members.any() else None)
    return recalls


def paired_margin_interval(
    ours: torch.Tensor, theirs: torch.Tensor, labels: torch.Tensor, resamples: int = 2000, seed: int = 0,
) -> tuple[float, float]:
    """95 % paired-bootstrap interval of accuracy(ours) - accuracy(theirs) on the same queries.

    "Clearly beats" is then a lower bound above zero, not a difference smaller than the
    noise of 1,000 queries (about 1 point).
    """
    difference = (ours == labels).float() - (theirs == labels).float()  # [Nq] in {-1, 0, 1}
    generator = torch.Generator().manual_seed(seed)
    draws = torch.randint(len(difference), (resamples, len(difference)), generator=generator)
    margins = difference[draws].mean(dim=1)
    low, high = torch.quantile(margins, torch.tensor([0.025, 0.975])).tolist()
    return low, high


PROBE_WEIGHT_DECAYS = (1e-4, 1e-3, 1e-2, 1e-1)
PROBE_LBFGS_ITERATIONS = 200


def probe_predictions(
    bank: torch.Tensor, queries: torch.Tensor, probe: ProbeSet, column: str, k: int, temperature: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(k-NN, linear-probe) class ids [Nq] for one label column, from features bank [Nb, D] / queries [Nq, D]."""
    train_y, test_y, classes = probe.bank_labels[column], probe.query_labels[column], len(probe.classes[column])
    knn = knn_predict(bank, train_y, queries, k, temperature, classes)
    linear = linear_probe_predict(bank, train_y, queries, test_y, classes, PROBE_WEIGHT_DECAYS, PROBE_LBFGS_ITERATIONS)
    return knn, linear


def probe_features(bank: torch.Tensor, queries: torch.Tensor, probe: ProbeSet, prefix: str, k: int, temperature: float) -> dict[str, float]:
    """k-NN and linear-probe accuracy of features bank [Nb, D] / queries [Nq, D], per label column.

    Keys are `<column>/<prefix>_knn` and `<column>/<prefix>_linear`.
    """
    metrics: dict[str, float] = {}
    for column in probe.classes:
        knn, linear = probe_predictions(bank, queries, probe, column, k, temperature)
        metrics[f"{column}/{prefix}_knn"] = accuracy(knn, probe.query_labels[column])
        metrics[f"{column}/{prefix}_linear"] = accuracy(linear, probe.query_labels[column])
    return metrics


def raw_pixel_baselines(probe: ProbeSet, k: int, temperature: float) -> dict[str, float]:
    """What the raw pixels alone achieve (k-NN and linear probe on flattened images), and chance."""
    metrics = probe_features(probe.bank_images.flatten(1), probe.query_images.flatten(1), probe, "pixel", k, temperature)
    metrics.update({f"{column}/chance": probe.chance(column) for column in probe.classes})
    return metrics


def embedding_probe(embed: Callable[[torch.Tensor], torch.Tensor], probe: ProbeSet, k: int, temperature: float) -> dict[str, float]:
    """k-NN and linear-probe accuracy of the features `embed` gives the probe images."""
    return probe_features(embed(probe.bank_images), embed(probe.query_images), probe, "embedding", k, temperature)


@dataclass(frozen=True)
class ColumnReport:
    """One label column: C's k-NN against the raw-pixel linear probe, overall and per class.

    The per-class recalls say where an embedding loses to the pixels (e.g. exudate on small
    tonsils), which the overall accuracy hides.
    """

    column: str
    classes: list[str]
    queries: int
    chance: float
    pixel_knn: float
    pixel_linear: float
    embedding_knn: float
    embedding_linear: float
    embedding_knn_recall: list[float | None]
    pixel_linear_recall: list[float | None]
    margin_interval: tuple[float, float]  # 95 % paired bootstrap of `margin`

    @property
    def margin(self) -> float:
        """Embedding k-NN minus raw-pixel linear accuracy: the issue's bar is a clear positive margin."""
        return self.embedding_knn - self.pixel_linear

    @property
    def clearly_beats_pixels(self) -> bool:
        """C's k-NN beats the raw-pixel linear probe beyond query noise (interval above zero)."""
        return self.margin_interval[0] > 0.0


def compare_with_raw_pixels(
    embed: Callable[[torch.Tensor], torch.Tensor], probe: ProbeSet, k: int, temperature: float,
) -> list[ColumnReport]:
    """A `ColumnReport` per label column of `probe` for the features `embed` gives."""
    bank, queries = embed(probe.bank_images), embed(probe.query_images)
    pixel_bank, pixel_queries = probe.bank_images.flatten(1), probe.query_images.flatten(1)
    reports = []
    for column, names in probe.classes.items():
        truth = probe.query_labels[column]
        embedding_knn, embedding_linear = probe_predictions(bank, queries, probe, column, k, temperature)
        pixel_knn, pixel_linear = probe_predictions(pixel_bank, pixel_queries, probe, column, k, temperature)

        reports.append(ColumnReport(
            column=column, classes=list(names), queries=len(truth), chance=probe.chance(column),
            pixel_knn=accuracy(pixel_knn, truth), pixel_linear=accuracy(pixel_linear, truth),
            embedding_knn=accuracy(embedding_knn, truth), embedding_linear=accuracy(embedding_linear, truth),
            embedding_knn_recall=per_class_recall(embedding_knn, truth, len(names)),
            pixel_linear_recall=per_class_recall(pixel_linear, truth, len(names)),
            margin_interval=paired_margin_interval(embedding_knn, pixel_linear, truth),
        ))
    return reports
