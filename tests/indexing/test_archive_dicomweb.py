"""A PACS as the source: a real Orthanc (Debian's orthanc + orthanc-dicomweb) on loopback.

The fixture starts Orthanc itself on a free port with its own config and storage in a temp dir and
stops it afterwards. Install it with `scripts/ensure-orthanc.sh`; without it these tests skip.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from typer.testing import CliRunner

from indexing.archive import Archive
from indexing.ingest.run import ingest_dicomweb
from tests.indexing.conftest import stored_with_metadata

CASES = 4
SIZE = 32
SEED = 5


@pytest.fixture(scope="module")
def orthanc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Base URL of a private Orthanc with the DICOMweb plugin (`api.viewer.orthanc`, as the demo starts it)."""
    from api.viewer.orthanc import OrthancError, orthanc_binary, private_orthanc

    if orthanc_binary() is None:
        pytest.skip("Orthanc with the DICOMweb plugin is not installed (apt cannot provide it here?): run scripts/ensure-orthanc.sh")
    try:
        with private_orthanc(tmp_path_factory.mktemp("orthanc")) as started:
            yield started.url
    except OrthancError as error:
        pytest.fail(str(error))


@pytest.fixture(scope="module")
def pacs(orthanc: str, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    """(DICOMweb root, phantom dataset) with the phantoms' DICOMs (and a CT slice) stored in Orthanc."""
    import numpy as np
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    from phantoms.dataset import generate_dataset

    dataset = generate_dataset(tmp_path_factory.mktemp("pacs") / "ds", CASES, SIZE, SEED, dicom=True)
    files = sorted((dataset / "dicom").glob("*.dcm"))
    ct_meta = FileMetaDataset()
    ct_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    ct_meta.MediaStorageSOPInstanceUID = generate_uid()
    ct_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ct = FileDataset("ct.dcm", {}, file_meta=ct_meta, preamble=b"\0" * 128)
    ct.SOPClassUID, ct.SOPInstanceUID = ct_meta.MediaStorageSOPClassUID, ct_meta.MediaStorageSOPInstanceUID
    ct.StudyInstanceUID, ct.SeriesInstanceUID, ct.Modality, ct.PatientID = generate_uid(), generate_uid(), "CT", "X"
    ct.Rows = ct.Columns = 4
    ct.SamplesPerPixel, ct.PhotometricInterpretation = 1, "MONOCHROME2"
    ct.BitsAllocated, ct.BitsStored, ct.HighBit, ct.PixelRepresentation = 16, 16, 15, 0
    ct.PixelData = np.zeros((4, 4), np.uint16).tobytes()
    ct_path = dataset / "ct.dcm"
    ct.save_as(ct_path, enforce_file_format=True)
    for path in [*files, ct_path]:
        response = requests.post(f"{orthanc}/instances", data=path.read_bytes(), timeout=10)
        assert response.ok, response.text
    return f"{orthanc}/dicom-web", dataset


def _counting_client(url: str):  # type: ignore[no-untyped-def]
    from dicomweb_client.api import DICOMwebClient

    class CountingClient(DICOMwebClient):
        retrieved = 0

        def retrieve_instance(self, *args, **kwargs):  # type: ignore[no-untyped-def]
            CountingClient.retrieved += 1
            return super().retrieve_instance(*args, **kwargs)

    return CountingClient(url=url)


def test_dicomweb_walks_studies_and_retrieves_photographs(archive: Archive, pacs: tuple[str, Path]) -> None:
    url, dataset = pacs
    client = _counting_client(url)
    report = ingest_dicomweb(archive, client, metadata_csv=dataset / "metadata.csv")
    assert report.added == CASES
    assert [reason for _, reason in report.skipped] == ["unsupported SOP class 1.2.840.10008.5.1.4.1.1.2"]
    assert type(client).retrieved == CASES  # the CT was refused from its QIDO result, never retrieved

    with archive.sessions() as session:
        listed = stored_with_metadata(session, dataset)
    for row, meta in listed:
        assert (row.source, row.study_uid, row.series_uid, row.diagnosis) == ("dicomweb", meta["study_uid"], meta["series_uid"], meta["diagnosis"])

    again = ingest_dicomweb(archive, client)
    assert (again.added, again.already_present) == (0, CASES)
    assert type(client).retrieved == CASES  # known SOP UIDs are not fetched again


def test_cli_ingests_from_dicomweb(archive: Archive, pacs: tuple[str, Path]) -> None:
    from api.cli import app

    url, _ = pacs
    env = {
        "S2M_DATABASE_URL": archive.settings.database_url,
        "S2M_DATA_DIR": str(archive.settings.data_dir),
        "S2M_PSEUDONYM_KEY": archive.settings.pseudonym_key.decode(),
    }
    result = CliRunner().invoke(app, ["archive", "ingest", "--dicomweb", url, "--no-progress"], env=env)
    assert result.exit_code == 0, result.output
    assert f"added {CASES} images" in result.output
    assert "1 skipped" in result.output
