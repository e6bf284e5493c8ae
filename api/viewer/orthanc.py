"""A private Orthanc (Debian's `orthanc` + `orthanc-dicomweb`) on a loopback port, for the demo and the tests.

Why its own process and config: the system service is never started or touched; each caller
gets an Orthanc with its own storage folder, no DICOM port and no remote access, which it stops
when done. `scripts/ensure-orthanc.sh` installs the packages; without them `orthanc_binary()` is None.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

import httpx

DICOMWEB_PLUGIN = Path("/usr/share/orthanc/plugins/libOrthancDicomWeb.so")
STARTUP_TIMEOUT_S = 30.0


class OrthancError(RuntimeError):
    """The private Orthanc did not start or refused a file (one sentence, its log's tail kept apart)."""


@dataclass(frozen=True)
class Orthanc:
    url: str  # its REST root, e.g. http://127.0.0.1:8042

    @property
    def dicomweb(self) -> str:
        return f"{self.url}/dicom-web"

    def instance_count(self) -> int:
        return int(httpx.get(f"{self.url}/statistics", timeout=10).json()["CountInstances"])

    def upload(self, files: Iterable[Path]) -> int:
        """Store DICOM files (Orthanc keeps one copy of a SOP instance already there); how many were sent."""
        sent = 0
        with httpx.Client(timeout=30) as client:
            for path in files:
                answer = client.post(f"{self.url}/instances", content=path.read_bytes())
                if answer.status_code != 200:
                    raise OrthancError(f"Orthanc refused {path.name} (HTTP {answer.status_code})")
                sent += 1
        return sent


def orthanc_binary() -> str | None:
    """The Orthanc executable when it and its DICOMweb plugin are installed, else None."""
    binary = shutil.which("Orthanc") or shutil.which("Orthanc", path="/usr/sbin")
    return binary if binary is not None and DICOMWEB_PLUGIN.exists() else None


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for_answer(url: str, process: subprocess.Popen, deadline: float, interval: float = 0.2) -> bool:
    """True once GET `url` answers 200; False when `process` ends or `deadline` (monotonic) passes first."""
    while process.poll() is None and time.monotonic() < deadline:
        with suppress(httpx.TransportError):
            if httpx.get(url, timeout=5).status_code == 200:
                return True
        time.sleep(interval)
    return False


@contextmanager
def private_orthanc(root: Path, port: int | None = None) -> Iterator[Orthanc]:
    """An Orthanc storing under `root` (kept, so a later start finds its files), serving DICOMweb on loopback."""
    binary = orthanc_binary()
    if binary is None:
        raise OrthancError("Orthanc with its DICOMweb plugin is not installed (scripts/ensure-orthanc.sh installs it)")
    root.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    config = {
        "Name": "s2m-private", "StorageDirectory": str(root / "storage"), "IndexDirectory": str(root / "storage"),
        "HttpPort": port, "DicomServerEnabled": False, "RemoteAccessAllowed": False, "AuthenticationEnabled": False,
        "Plugins": [str(DICOMWEB_PLUGIN)], "DicomWeb": {"Enable": True, "Root": "/dicom-web/"},
    }
    (root / "orthanc.json").write_text(json.dumps(config))
    with (root / "orthanc.log").open("w") as log:
        process = subprocess.Popen([binary, str(root / "orthanc.json")], stdout=log, stderr=subprocess.STDOUT)
        try:
            orthanc = Orthanc(f"http://127.0.0.1:{port}")
            if not wait_for_answer(f"{orthanc.url}/system", process, time.monotonic() + STARTUP_TIMEOUT_S):
                raise OrthancError(f"Orthanc did not start on port {port}: see {root / 'orthanc.log'}")
            yield orthanc
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
