"""`s2m archive export`: the store's live images as a dataset folder the training commands read."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils
from typer.testing import CliRunner

from api.cli import app
from indexing import store
from indexing.archive import Archive
from indexing.export import ExportError, export_dataset
from indexing.ingest.run import ingest_path

CASES = 6
SIZE = 32
SEED = 5
RENUMBERED_INSTANCE = 300  # does not fit a uint8 mask

# pycocotools' decode warns under numpy 2 (outside this project)
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")


@pytest.fixture(scope="module")
def phantom_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from phantoms.dataset import generate_dataset

    return generate_dataset(tmp_path_factory.mktemp("phantoms") / "ds", CASES, SIZE, SEED)


def _rows(folder: Path) -> list[dict[str, str]]:
    with (folder / "metadata.csv").open(newline="") as handle:
        return list(csv.DictReader(handle))


def _pixels(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image)


def _assert_coco_matches_masks(out: Path) -> dict:
    """Every COCO instance is exactly the pixels of its `instance_id` in the mask PNG."""
    coco = json.loads((out / "annotations.json").read_text())
    names = {entry["id"]: entry["file_name"] for entry in coco["images"]}
    assert len({a["id"] for a in coco["annotations"]}) == len(coco["annotations"])
    for annotation in coco["annotations"]:
        instance_map = _pixels(out / "masks" / names[annotation["image_id"]])
        rle = {"size": annotation["segmentation"]["size"], "counts": annotation["segmentation"]["counts"].encode()}
        np.testing.assert_array_equal(mask_utils.decode(rle).astype(bool), instance_map == annotation["instance_id"])
    return coco


def test_export_reproduces_images_masks_and_labels(archive: Archive, phantom_dataset: Path, tmp_path: Path) -> None:
    from generation.data import ImageFolderDataset
    from generation.solov2.data import CocoInstanceDataset
    from formats.categories import CATEGORY_NAMES
    from phantoms.reader import read_metadata

    assert ingest_path(archive, phantom_dataset).added == CASES
    source = {row["sop_uid"]: row for row in read_metadata(phantom_dataset)}
    with archive.sessions() as session:
        deleted = store.live_image_ids(session)[1]
        deleted_sop = store.get_image(session, deleted).sop_uid
        store.soft_delete_image(session, deleted)
        session.commit()

    out = tmp_path / "export"
    report = export_dataset(archive, out)

    assert (report.images, report.annotated) == (CASES - 1, CASES - 1)
    rows = _rows(out)
    assert [int(r["image_id"]) for r in rows] == sorted(int(r["image_id"]) for r in rows)
    assert deleted_sop not in {r["sop_uid"] for r in rows} and str(deleted) not in {r["image_id"] for r in rows}
    assert sorted(p.name for p in (out / "images").iterdir()) == [r["file"] for r in rows]
    for row in rows:
        original = source[row["sop_uid"]]
        exported = out / "images" / row["file"]
        assert exported.is_symlink() and Path(exported.readlink()).is_absolute()
        np.testing.assert_array_equal(_pixels(exported), _pixels(phantom_dataset / "images" / original["file"]))
        np.testing.assert_array_equal(_pixels(out / "masks" / row["file"]), _pixels(phantom_dataset / "masks" / original["file"]))
        assert (row["diagnosis"], row["tonsil_grade"], row["case_ref"], row["study_date"], row["study_uid"]) == (
            original["diagnosis"], original["tonsil_grade"], original["case_id"], original["study_date"], original["study_uid"],
        )
        assert row["findings"] == original["findings"]
        assert row["patient_ref"] and row["patient_ref"] != original["patient_id"]
    text = (out / "metadata.csv").read_text() + (out / "annotations.json").read_text()
    assert not any(original["patient_id"] in text for original in source.values())
    _assert_coco_matches_masks(out)
    assert not list(tmp_path.glob(".export.export-*")), "the staging folder is renamed, not left behind"

    assert len(ImageFolderDataset(out, SIZE)) == CASES - 1
    instances = CocoInstanceDataset(out, SIZE, tuple(CATEGORY_NAMES))
    image, labels, masks = instances[0]
    assert len(instances) == CASES - 1
    assert image.shape == (3, SIZE, SIZE) and len(labels) == len(masks) > 0


def test_annotated_only_and_instance_ids_beyond_uint8(archive: Archive, phantom_dataset: Path, tmp_path: Path, make_photo) -> None:  # type: ignore[no-untyped-def]
    photos = tmp_path / "photos"
    photos.mkdir()
    for n in range(2):
        Image.fromarray(make_photo(n, SIZE)).save(photos / f"{n}.png")
    ingest_path(archive, phantom_dataset, progress=False)
    ingest_path(archive, photos)
    with archive.sessions() as session:
        plain_id = store.live_image_ids(session)[-1]
        square = np.zeros((SIZE, SIZE), dtype=np.uint8, order="F")
        square[4:12, 4:12] = 1
        rle = mask_utils.encode(square)
        store.add_annotation(
            session, plain_id,
            store.NewAnnotation(category_id=1, instance_id=RENUMBERED_INSTANCE,
                                mask_rle={"size": [SIZE, SIZE], "counts": rle["counts"].decode()}),
        )
        session.commit()

    annotated = export_dataset(archive, tmp_path / "annotated", annotated_only=True)
    everything = export_dataset(archive, tmp_path / "all")
    limited = export_dataset(archive, tmp_path / "limited", limit=2)

    assert (annotated.images, annotated.annotated) == (CASES + 1, CASES + 1)
    assert (everything.images, everything.annotated) == (CASES + 2, CASES + 1)
    assert limited.images == 2 and [r["image_id"] for r in _rows(tmp_path / "limited")] == ["1", "2"]
    unannotated = {r["file"] for r in _rows(tmp_path / "all")} - {r["file"] for r in _rows(tmp_path / "annotated")}
    assert len(unannotated) == 1 and not (tmp_path / "all" / "masks" / unannotated.pop()).exists()

    coco = _assert_coco_matches_masks(tmp_path / "annotated")
    renumbered = [a for a in coco["annotations"] if a["image_id"] == plain_id]
    assert [(a["instance_id"], a["category_id"], a["area"]) for a in renumbered] == [(1, 1, 64)]


def test_non_empty_out_is_refused_and_untouched(archive: Archive, phantom_dataset: Path, tmp_path: Path) -> None:
    ingest_path(archive, phantom_dataset)
    out = tmp_path / "busy"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")

    with pytest.raises(ExportError, match="not empty"):
        export_dataset(archive, out)
    assert [p.name for p in out.iterdir()] == ["notes.txt"] and (out / "notes.txt").read_text() == "keep me"
    assert not list(tmp_path.glob(".busy.*"))

    empty = tmp_path / "empty"
    empty.mkdir()
    assert export_dataset(archive, empty).images == CASES


def test_a_failed_export_leaves_no_dataset(archive: Archive, phantom_dataset: Path, tmp_path: Path) -> None:
    ingest_path(archive, phantom_dataset)
    with archive.sessions() as session:
        last = store.get_image(session, store.live_image_ids(session)[-1])
        archive.files.remove(last.stored_path)

    with pytest.raises(FileNotFoundError, match="s2m archive check"):
        export_dataset(archive, tmp_path / "broken")
    assert not (tmp_path / "broken").exists() and not list(tmp_path.glob(".broken.*"))


def test_dicom_names_and_patient_ids_never_leave_the_store(archive: Archive, tmp_path: Path, make_photo, write_dicom) -> None:  # type: ignore[no-untyped-def]
    write_dicom(tmp_path / "in" / "a.dcm", make_photo(1), patient_name="Doe^Jane", patient_id="MRN-0001")
    assert ingest_path(archive, tmp_path / "in").added == 1

    out = tmp_path / "out"
    export_dataset(archive, out)

    (row,) = _rows(out)
    assert row["patient_ref"] and row["study_date"] == "2024-03-05"
    written = "".join(p.read_text() for p in out.iterdir() if p.is_file())
    assert "Doe" not in written and "Jane" not in written and "MRN-0001" not in written
    assert not (out / "annotations.json").exists() and not (out / "masks").exists()


def test_cli_export_feeds_generator_training(archive: Archive, phantom_dataset: Path, tmp_path: Path) -> None:
    from generation.bundle import Bundle
    from generation.data import dataset_fingerprint

    env = {
        "S2M_DATABASE_URL": archive.settings.database_url,
        "S2M_DATA_DIR": str(archive.settings.data_dir),
        "S2M_PSEUDONYM_KEY": archive.settings.pseudonym_key.decode(),
    }
    runner = CliRunner()
    ingest_path(archive, phantom_dataset)
    out, bundle = tmp_path / "export", tmp_path / "bundle"

    exported = runner.invoke(app, ["archive", "export", str(out), "--annotated-only"], env=env)
    assert exported.exit_code == 0, exported.output
    assert f"exported {CASES} images ({CASES} annotated)" in exported.output
    refused = runner.invoke(app, ["archive", "export", str(out)], env=env)
    assert refused.exit_code == 2 and "not empty" in refused.output
    if archive.engine.dialect.name != "sqlite":
        return  # training reads only the folder: once is enough for the suite's time budget

    trained = runner.invoke(app, [
        "train", "generator", "--data", str(out), "--run-dir", str(tmp_path / "run"), "--preset", "tiny",
        "--steps", "2", "--bundle", str(bundle), "--batch", "2", "--checkpoint-every", "2", "--no-progress",
    ])
    assert trained.exit_code == 0, trained.output
    assert Bundle.open(bundle).info["networks"]["generator"]["data_fingerprint"] == dataset_fingerprint(out)
