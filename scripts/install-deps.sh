#!/bin/sh
# SPDX-License-Identifier: MIT
#
# Installs what building, testing and benchmarking shmgroup needs on Debian 12
# (bookworm).  Safe to run again; works as root without a terminal (CI, a fresh
# container) and, as another user, through sudo.
#
#   scripts/install-deps.sh
#
# Service start-up is suppressed while installing (through policy-rc.d, removed
# again afterwards), so redis-server, needed only as the benchmark's peer, is
# installed but not started: bench/ starts its own instance on a unix socket.
#
# libsodium-dev gives the agent's packet authentication (keyed BLAKE2b);
# clang, with its runtimes (libclang-rt-14-dev), builds the decoder's libFuzzer
# target (scripts/fuzz-wire.sh).
#
# groff-base formats the man pages for their test; tmux runs shmgroup-top's
# screen in its test (which is skipped without it); iproute2's ip puts two
# replicating agents in network namespaces joined by a veth pair, in
# test_replication as root (skipped without it).  The unit file's test uses
# systemd-analyze (package systemd) where it is installed and is skipped
# otherwise: systemd is too heavy to pull into a container for one check.
set -eu

PACKAGES="
	build-essential
	meson
	ninja-build
	pkgconf
	python3
	liburcu-dev
	libck-dev
	libsodium-dev
	clang
	libclang-rt-14-dev
	check
	libsubunit-dev
	libncurses-dev
	libhiredis-dev
	redis-server
	gnuplot-nox
	jq
	groff-base
	tmux
	iproute2
"

if [ "$(id -u)" -eq 0 ]; then
	SUDO=
elif command -v sudo >/dev/null 2>&1; then
	SUDO=sudo
else
	echo "install-deps.sh: not root and sudo is not installed; run it as root" >&2
	exit 1
fi

if ! command -v apt-get >/dev/null 2>&1; then
	echo "install-deps.sh: apt-get not found; this script is for Debian 12" >&2
	exit 1
fi

policy=/usr/sbin/policy-rc.d
made_policy=
cleanup() {
	if [ -n "$made_policy" ]; then
		$SUDO rm -f "$policy"
	fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM
if [ ! -e "$policy" ]; then
	printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$policy" >/dev/null
	$SUDO chmod 755 "$policy"
	made_policy=1
fi

export DEBIAN_FRONTEND=noninteractive
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -q
# shellcheck disable=SC2086 # word splitting of the package list is intended
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
	$PACKAGES </dev/null
echo "install-deps.sh: dependencies installed"
