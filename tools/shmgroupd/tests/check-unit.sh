#!/bin/sh
# SPDX-License-Identifier: MIT
#
# check-unit.sh UNIT SBINDIR SHMGROUPD MANPAGE
#
# The configured unit template starts the installed agent (ExecStart names
# SBINDIR/shmgroupd), and `systemd-analyze verify` accepts it without a single
# warning.  The binary is not installed yet when tests run, so the copy that
# is verified starts the built SHMGROUPD instead; Documentation=man:shmgroupd(8)
# is checked against MANPAGE.  Exit 77 (skip) where systemd-analyze is missing.
set -eu
unit=$1
sbindir=$2
agent=$3
manpage=$4

status=0
expect="ExecStart=$sbindir/shmgroupd --group %i"
if ! grep -qxF "$expect" "$unit"; then
	echo "FAIL: $unit has no line '$expect':"
	grep '^ExecStart=' "$unit" || true
	status=1
fi

if ! command -v systemd-analyze >/dev/null 2>&1; then
	echo "SKIP: systemd-analyze not found (Debian package systemd); the unit was not verified"
	[ "$status" -eq 0 ] && exit 77
	exit "$status"
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/man/man8"
cp "$manpage" "$tmp/man/man8/"
name=$(basename "$unit" .in)
sed "s#^ExecStart=$sbindir/shmgroupd #ExecStart=$agent #" "$unit" >"$tmp/$name"

man_opt=--man=yes
command -v man >/dev/null 2>&1 || man_opt=--man=no
# Any output is a finding: verify prints warnings but still exits 0.
if ! MANPATH="$tmp/man" systemd-analyze verify "$man_opt" "$tmp/$name" >"$tmp/out" 2>&1; then
	status=1
fi
if [ -s "$tmp/out" ]; then
	status=1
fi
if [ "$status" -ne 0 ]; then
	echo "FAIL: systemd-analyze verify $name:"
	cat "$tmp/out"
	exit 1
fi
echo "ok: $name verified by $(systemd-analyze --version | head -n 1) ($man_opt)"
