#!/bin/sh
# SPDX-License-Identifier: MIT
#
# check-exports.sh NM LIBSHMGROUP.so SHMGROUP.h
#
# Fails if the shared library exports a symbol that does not start with
# "shmg_" (an internal leaked through visibility or the version script), or
# if a function the public header declares with SHMG_EXPORT is not exported.
set -eu
nm=$1
lib=$2
header=$3

exported=$("$nm" -D --defined-only "$lib" |
	awk '{ name = $NF; sub(/@.*/, "", name); if ($(NF-1) == "A" && name ~ /^SHMGROUP_/) next; print name }' |
	sort -u)

status=0
leaked=$(printf '%s\n' "$exported" | grep -v '^shmg_' || true)
if [ -n "$leaked" ]; then
	echo "FAIL: $lib exports symbols outside the shmg_ namespace:"
	printf '  %s\n' $leaked
	status=1
fi

# Names of the functions declared with SHMG_EXPORT (declarations may span lines).
declared=$(tr '\n' ' ' <"$header" | grep -o 'SHMG_EXPORT [^;(]*[ *]shmg_[a-z0-9_]*(' |
	grep -o 'shmg_[a-z0-9_]*($' | sed 's/($//' | sort -u)
if [ -z "$declared" ]; then
	echo "FAIL: found no SHMG_EXPORT declarations in $header"
	exit 1
fi
missing=
for f in $declared; do
	printf '%s\n' "$exported" | grep -qx "$f" || missing="$missing $f"
done
if [ -n "$missing" ]; then
	echo "FAIL: declared in $header but not exported by $lib:"
	printf '  %s\n' $missing
	status=1
fi

n_exp=$(printf '%s\n' "$exported" | grep -c . || true)
n_decl=$(printf '%s\n' "$declared" | grep -c . || true)
[ "$status" -eq 0 ] && echo "ok: $n_exp exported symbols, all shmg_*; all $n_decl declared functions exported"
exit "$status"
