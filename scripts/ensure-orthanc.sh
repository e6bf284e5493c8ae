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
# Keep dpkg from starting the system-wide service during installation.
policy=/usr/sbin/policy-rc.d
created_policy=0
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\nexit 101\n' > "$policy" && chmod +x "$policy" && created_policy=1
fi
cleanup() { if [ "$created_policy" = 1 ]; then rm -f "$policy"; fi; }
trap cleanup EXIT
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends orthanc orthanc-dicomweb >/dev/null
command -v Orthanc >/dev/null 2>&1 || { echo "Orthanc binary missing after install" >&2; exit 1; }
plugin_present || { echo "Orthanc DICOMweb plugin missing after install" >&2; exit 1; }
