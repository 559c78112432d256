#!/usr/bin/env bash
# Installs the Debian packages the suite drives (wireguard-go and wg for interop, iproute2 and
# nftables for namespaces and the UDP block, iperf3 and ping for traffic, openssl for test
# certificates, systemd for systemd-analyze on the packaged unit, the arm64 cross compiler and
# qemu-user to build and smoke-test the arm64 release, nginx and tinyproxy as the reverse and
# forward proxies of the proxy tests, nginx's stream module to put TLS in front of tinyproxy). Run by `npm test`. Package scripts may not start services:
# the tests run nginx and tinyproxy themselves, inside namespaces, with their own configuration.
# As root it installs what is missing; otherwise it only reports, and the suites that need a
# package fail with its name.
set -euo pipefail
packages=(wireguard-go wireguard-tools iproute2 nftables iperf3 iputils-ping openssl systemd
  gcc-aarch64-linux-gnu binutils-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user nginx libnginx-mod-stream tinyproxy)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
  echo "prerequisites: missing Debian packages: ${missing[*]} (run as root to install them)" >&2
  exit 0
fi
echo "prerequisites: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
policy=/usr/sbin/policy-rc.d
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\nexit 101\n' >"$policy"
  chmod 755 "$policy"
  trap 'rm -f "$policy"' EXIT
fi
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
