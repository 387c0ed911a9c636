#!/bin/sh
# SPDX-License-Identifier: MIT
#
# check-config-example.sh SHMGROUPD EXAMPLE
#
# The example configuration stays true to the agent's parser:
#  - the agent accepts the file as shipped;
#  - with every commented `#key = value` line enabled it still accepts it, and
#    reports each of those keys as set (so every documented key is real and
#    every sample value parses);
#  - every key the agent accepts (group, log_level and the creation options
#    that `shmgroupd --help` lists) is documented in the file.
set -eu
agent=$1
example=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

status=0
if ! "$agent" --group example-check --config "$example" --check-config >"$tmp/out" 2>&1; then
	echo "FAIL: shmgroupd rejects $example as shipped:"
	cat "$tmp/out"
	status=1
fi

sed -E 's/^#([a-z_]+ = )/\1/' "$example" >"$tmp/all.conf"
if ! "$agent" --config "$tmp/all.conf" --check-config >"$tmp/all.out" 2>&1; then
	echo "FAIL: shmgroupd rejects $example with every sample line enabled:"
	cat "$tmp/all.out"
	status=1
fi
documented=$(sed -nE 's/^#?([a-z_]+) = .*/\1/p' "$example" | sort -u)
reported=$(sed -nE 's/^([a-z_]+) = .*/\1/p' "$tmp/all.out" | sort -u)

# The keys the agent accepts: group, log_level, and each creation option of
# --help (--arena-size -> arena_size).
accepted=$( (echo group; echo log_level
	"$agent" --help | sed -n '/^Creation options/,/^Signals/p' |
		grep -oE -- '--[a-z-]+' | sed 's/^--//; s/-/_/g') | sort -u)
if [ "$(echo "$accepted" | wc -l)" -lt 4 ]; then
	echo "FAIL: could not read the creation options from shmgroupd --help"
	exit 1
fi

for k in $accepted; do
	if ! echo "$documented" | grep -qx "$k"; then
		echo "FAIL: key '$k' is accepted by shmgroupd but not documented in $example"
		status=1
	fi
done
for k in $documented; do
	if ! echo "$reported" | grep -qx "$k"; then
		echo "FAIL: key '$k' of $example was not taken by shmgroupd --check-config"
		status=1
	fi
done
[ "$status" -eq 0 ] &&
	echo "ok: $(echo "$documented" | wc -l) keys documented, all accepted; none missing"
exit "$status"
