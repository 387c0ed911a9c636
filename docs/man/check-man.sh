#!/bin/sh
# SPDX-License-Identifier: MIT
#
# check-man.sh PAGE...
#
# Formats each man page with groff, every warning enabled (-ww), for a
# terminal, and fails on any diagnostic; also checks that the page's .TH names
# the file (shmg_open.3 starts with .TH SHMG_OPEN 3).  Exit 77 (skip) without
# groff (Debian package groff-base).
set -u
if ! command -v groff >/dev/null 2>&1; then
	echo "SKIP: groff not found (Debian package groff-base); man pages not checked"
	exit 77
fi
[ "$#" -gt 0 ] || { echo "FAIL: no pages given"; exit 1; }

status=0
for page in "$@"; do
	base=$(basename "$page")
	sect=${base##*.}
	title=$(echo "${base%.*}" | tr 'a-z' 'A-Z')
	if ! grep -qE "^\.TH \"?$title\"? $sect( |\$)" "$page"; then
		echo "FAIL: $page: no '.TH $title $sect' line"
		status=1
	fi
	out=$(LC_ALL=C.UTF-8 groff -ww -man -Tutf8 -z "$page" 2>&1)
	rc=$?
	if [ "$rc" -ne 0 ] || [ -n "$out" ]; then
		echo "FAIL: $page (groff exit $rc):"
		echo "$out"
		status=1
	fi
done
[ "$status" -eq 0 ] && echo "ok: $# pages format without warnings"
exit "$status"
