#!/usr/bin/env bash
# Sourced by scripts/ensure-*.sh: `apt_install PACKAGE...` installs Debian packages quietly, without
# letting dpkg start their system-wide services (the tests start their own, on free loopback ports).
apt_install() (
  set -euo pipefail
  policy=/usr/sbin/policy-rc.d
  created_policy=0
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' > "$policy" && chmod +x "$policy" && created_policy=1
  fi
  trap 'if [ "$created_policy" = 1 ]; then rm -f "$policy"; fi' EXIT
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
)
