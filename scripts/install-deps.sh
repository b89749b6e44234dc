#!/usr/bin/env bash
# Installs the system packages Roost's tests and demo need, only when missing.
# Used by .ci/run and `make deps`; fresh machines have no package lists yet.
# podman, runc and busybox-static are for the CNI end-to-end test.
# `install-deps.sh bench` adds what `make bench` needs on top (iperf3 for
# the dataplane throughput table); the tests do not use it.
set -euo pipefail

need=()
if [ "${1:-}" = bench ]; then
  command -v iperf3 >/dev/null 2>&1 || need+=(iperf3)
fi
command -v bird >/dev/null 2>&1 || need+=(bird2)
command -v etcd >/dev/null 2>&1 || need+=(etcd-server)
command -v etcdctl >/dev/null 2>&1 || need+=(etcd-client)
command -v ip >/dev/null 2>&1 || need+=(iproute2)
command -v ping >/dev/null 2>&1 || need+=(iputils-ping)
# The CNI end-to-end test runs containers with podman (CNI network
# backend) on runc, from an image holding a static busybox.
command -v podman >/dev/null 2>&1 || need+=(podman)
command -v runc >/dev/null 2>&1 || need+=(runc)
# A dynamically linked busybox (Debian's busybox package) cannot run in
# the test image, which holds nothing else: only busybox-static will do.
if ! dpkg-query -W -f='${Status}' busybox-static 2>/dev/null | grep -q 'ok installed'; then
  need+=(busybox-static)
fi
command -v nsenter >/dev/null 2>&1 || need+=(util-linux)

if [ ${#need[@]} -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "install-deps: missing ${need[*]}; run as root or install them: apt-get install -y ${need[*]}" >&2
  exit 1
fi
echo "install-deps: installing ${need[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
# The Debian packages enable system services; Roost starts its own
# instances with private sockets and ports, so keep the system ones off.
for svc in bird etcd; do
  if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet "$svc" 2>/dev/null; then
    systemctl stop "$svc" || true
  fi
done
