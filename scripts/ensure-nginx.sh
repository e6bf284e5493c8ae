#!/usr/bin/env bash
# Make sure Debian's nginx is installed, for the two-replica test (tests/api/test_replicas.py), which
# starts its own nginx on a free loopback port with docs/nginx-sketch2medi.conf. Idempotent; the
# package's system-wide service is never started here.
set -euo pipefail
present() { command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ]; }
if present; then
  exit 0
fi
echo "installing nginx (Debian package)"
source "$(dirname "$0")/apt-install.sh"
apt_install nginx
present || { echo "nginx missing after install" >&2; exit 1; }
