#!/bin/sh
# SPDX-License-Identifier: MIT
#
# Fuzzes the replication datagram decoder with libFuzzer (clang, with
# AddressSanitizer and UndefinedBehaviorSanitizer) for a bounded time.
#
#   scripts/fuzz-wire.sh [SECONDS]     (default 60)
#
# Starts from the corpus in the tree (tests/fuzz/corpus, left unchanged);
# new inputs go to a scratch directory (FUZZ_WORK, default build-fuzz/).
# A crash leaves its input in that directory and makes the script fail; add
# it to tests/fuzz/corpus under a name that does not start with "valid-" once
# fixed, so that tests/fuzz/test_corpus.c keeps checking it.
set -eu

seconds=${1:-60}
here=$(cd "$(dirname "$0")/.." && pwd)
work=${FUZZ_WORK:-$here/build-fuzz}
cc=${CLANG:-clang}

if ! command -v "$cc" >/dev/null 2>&1; then
	echo "fuzz-wire.sh: $cc not found (apt-get install clang)" >&2
	exit 1
fi
mkdir -p "$work/corpus"
"$cc" -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
	-I"$here/tools/shmgroupd/repl" \
	"$here/tests/fuzz/fuzz_wire.c" "$here/tools/shmgroupd/repl/wire.c" \
	-o "$work/fuzz_wire"
cd "$work"
./fuzz_wire -max_total_time="$seconds" -max_len=4096 -print_final_stats=1 \
	corpus "$here/tests/fuzz/corpus"
