#!/usr/bin/env bash
# Make sure Debian's Orthanc and its DICOMweb plugin are installed, for the archive's DICOMweb
# ingest test (tests/indexing). Idempotent. The test fixture starts its own Orthanc on a free
# loopback port with a temporary config and storage, so the system service is never started here.
set -euo pipefail
plugin_present() { ls /usr/share/orthanc/plugins/libOrthancDicomWeb.so* >/dev/null 2>&1; }
if command -v Orthanc >/dev/null 2>&1 && plugin_present; then
  exit 0
fi
echo "installing Orthanc + DICOMweb plugin (Debian packages)"
source "$(dirname "$0")/apt-install.sh"
apt_install orthanc orthanc-dicomweb
command -v Orthanc >/dev/null 2>&1 || { echo "Orthanc binary missing after install" >&2; exit 1; }
plugin_present || { echo "Orthanc DICOMweb plugin missing after install" >&2; exit 1; }
