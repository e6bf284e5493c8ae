"""Archive fixtures: every store test runs on SQLite and on the real PostgreSQL at 127.0.0.1:5432.

PostgreSQL gets one throwaway database per test session (unique name, dropped at the end); each
test starts from an empty schema and migrates it. Without a reachable server those cases skip,
saying why.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy.orm import Session

from indexing import store
from indexing.archive import Archive
from indexing.db import make_engine
from indexing.models import Image
from indexing.settings import Settings

PG_ADMIN_URL = "postgresql+psycopg2://postgres@127.0.0.1:5432/test"
TEST_BATCH_SIZE = 4
TEST_KEY = b"test-pseudonym-key"
VL_PHOTOGRAPHIC = "1.2.840.10008.5.1.4.1.1.77.1.4"
CT_IMAGE = "1.2.840.10008.5.1.4.1.1.2"


def stored_with_metadata(session: Session, dataset: Path) -> list[tuple[Image, dict[str, str]]]:
    """Each image the archive lists beside the phantom dataset's metadata.csv row of the same SOP UID;
    asserts the archive holds exactly the dataset's cases."""
    from phantoms.reader import read_metadata

    expected = {row["sop_uid"]: row for row in read_metadata(dataset)}
    rows = store.list_images(session)
    assert {row.sop_uid for row in rows} == set(expected)
    return [(row, expected[row.sop_uid]) for row in rows]


@contextmanager
def new_postgres_database() -> Iterator[str]:
    """URL of a fresh, uniquely named PostgreSQL database, dropped on leaving; skips the test when
    the server is not reachable."""
    from sqlalchemy import text
    from sqlalchemy.exc import OperationalError

    admin = make_engine(PG_ADMIN_URL).execution_options(isolation_level="AUTOCOMMIT")
    name = f"s2m_test_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    try:
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
    except OperationalError as error:
        admin.dispose()
        pytest.skip(f"PostgreSQL is not reachable on 127.0.0.1:5432 (run scripts/ensure-postgres.sh): {error.orig}")
    try:
        yield f"postgresql+psycopg2://postgres@127.0.0.1:5432/{name}"
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@contextmanager
def empty_target(settings: Settings, root: Path) -> Iterator[Settings]:
    """`settings` moved to an empty data dir under `root` and an empty database of the same backend
    (PostgreSQL: a fresh database, as a restore onto a new server gets), for restores."""
    if settings.database_url.startswith("sqlite"):
        yield replace(settings, data_dir=root / "data", database_url=f"sqlite:///{root / 'data' / 'archive.sqlite3'}")
        return
    with new_postgres_database() as url:
        yield replace(settings, data_dir=root / "data", database_url=url)


@pytest.fixture(scope="session")
def postgres_database() -> Iterator[str]:
    """URL of a fresh, uniquely named PostgreSQL database for this session, dropped afterwards."""
    with new_postgres_database() as url:
        yield url


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty database (no schema) on the parametrised backend."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'archive.sqlite3'}"
    return emptied_postgres(request)


def emptied_postgres(request: pytest.FixtureRequest) -> str:
    """The session's PostgreSQL database (`postgres_database`) with its schema dropped: a fresh start."""
    from sqlalchemy import text

    url = request.getfixturevalue("postgres_database")
    engine = make_engine(url)
    with engine.begin() as connection:
        connection.execute(text("DROP SCHEMA public CASCADE"))
        connection.execute(text("CREATE SCHEMA public"))
    engine.dispose()
    return url


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Settings:
    return Settings(
        data_dir=tmp_path / "data",
        database_url=database_url,
        pseudonym_key=TEST_KEY,
        ingest_batch_size=TEST_BATCH_SIZE,
    )


@pytest.fixture
def archive(settings: Settings) -> Iterator[Archive]:
    """A migrated, opened archive."""
    opened = Archive.create(settings)
    yield opened
    opened.close()


@pytest.fixture
def archive_with(archive: Archive) -> Callable[..., Archive]:
    """The same database and files, with other settings (e.g. a smaller pixel limit)."""
    def build(**changes: object) -> Archive:
        return replace(archive, settings=replace(archive.settings, **changes))

    return build


@pytest.fixture
def make_photo() -> Callable[..., np.ndarray]:
    """uint8 [size, size, 3] noise: every seed gives different pixels."""
    def photo(seed: int, size: int = 24) -> np.ndarray:
        return np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)

    return photo


@pytest.fixture
def write_dicom() -> Callable[..., Path]:
    """Writes a DICOM photograph the way a camera or PACS export would (pydicom, explicit VR LE)."""
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    def write(
        path: Path,
        pixels: np.ndarray | None,
        patient_name: str = "Doe^Jane",
        patient_id: str = "MRN-0001",
        sop_class: str = VL_PHOTOGRAPHIC,
        photometric: str = "RGB",
        study_date: str = "20240305",
        acquisition: str | None = "20240305101500",
    ) -> Path:
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = sop_class
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
        ds.SOPClassUID = sop_class
        ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
        ds.StudyInstanceUID = generate_uid()
        ds.SeriesInstanceUID = generate_uid()
        ds.Modality = "XC"
        ds.PatientName = patient_name
        ds.PatientID = patient_id
        ds.PatientBirthDate = "19700101"
        ds.StudyDate = study_date
        ds.StudyTime = "101500"
        if acquisition:
            ds.AcquisitionDateTime = acquisition
        if pixels is not None:
            ds.Rows, ds.Columns = pixels.shape[:2]
            ds.SamplesPerPixel = 1 if pixels.ndim == 2 else pixels.shape[2]
            ds.PhotometricInterpretation = photometric
            ds.BitsAllocated = ds.BitsStored = 8
            ds.HighBit = 7
            ds.PixelRepresentation = 0
            if pixels.ndim == 3:
                ds.PlanarConfiguration = 0
            ds.PixelData = np.ascontiguousarray(pixels).tobytes()
        path.parent.mkdir(parents=True, exist_ok=True)
        ds.save_as(path, enforce_file_format=True)
        return path

    return write

