#!/bin/sh
# SPDX-License-Identifier: MIT
#
# A staged install, checked from the outside:
#
#   scripts/check-install.sh [--no-rebuild] [BUILD [STAGE]]
#
# runs `meson install -C BUILD --destdir STAGE` (BUILD defaults to build,
# STAGE to a fresh temporary directory, removed afterwards), then checks that
# everything is where a user looks for it under STAGE/PREFIX: the shared and
# static library, the header, shmgroup.pc, shmgroupctl, shmgroup-top and
# shmgroupd, the man pages (a man3 name for every function of the header),
# the systemd unit starting the installed agent, and the example config.
# Finally it compiles examples/tour.c against the staged install through
# pkg-config, as a user would, once linked to the shared library (run with
# LD_LIBRARY_PATH, which must resolve libshmgroup into STAGE) and once to the
# static one, and runs both.
#
# pkg-config sees the staged .pc through PKG_CONFIG_PATH, with
# PKG_CONFIG_SYSROOT_DIR=STAGE prepended to its -I and -L paths (the .pc
# names the final prefix); --define-prefix is not used because it cannot
# relocate a multiarch libdir such as lib/x86_64-linux-gnu.
#
# Exit status 0 when all is there and both programs ran, 1 otherwise; the
# last line says which.  Registered as the meson test check-install.
set -u

rebuild=
if [ "${1:-}" = --no-rebuild ]; then
	rebuild=--no-rebuild
	shift
fi
src=$(cd "$(dirname "$0")/.." && pwd)
build=$(cd "${1:-build}" && pwd) || exit 1
if [ -n "${2:-}" ]; then
	mkdir -p "$2" && stage=$(cd "$2" && pwd) || exit 1
	keep=1
else
	stage=$(mktemp -d "${TMPDIR:-/tmp}/shmgroup-stage.XXXXXX") || exit 1
	keep=
fi
work=$(mktemp -d "${TMPDIR:-/tmp}/shmgroup-check.XXXXXX") || exit 1
cleanup() {
	rm -rf "$work"
	[ -n "$keep" ] || rm -rf "$stage"
}
trap cleanup EXIT

failures=0
fail() {
	echo "FAIL: $*"
	failures=$((failures + 1))
}

# 1. Install.
if ! meson install -C "$build" --destdir "$stage" $rebuild --quiet >"$work/install.log" 2>&1; then
	cat "$work/install.log"
	echo "check-install: meson install failed"
	exit 1
fi

# The directories as configured (absolute, or relative to the prefix).
dirs=$(meson introspect --buildoptions "$build" | python3 -c '
import json, sys
opts = {o["name"]: o["value"] for o in json.load(sys.stdin)}
prefix = opts["prefix"]
for name in ("prefix", "bindir", "sbindir", "libdir", "includedir", "mandir", "datadir"):
    value = opts[name]
    if name != "prefix" and not value.startswith("/"):
        value = prefix.rstrip("/") + "/" + value
    print(f"{name}={value}")
') || {
	echo "check-install: cannot read the build options of $build"
	exit 1
}
eval "$dirs"
root=$stage
echo "check-install: $build installed into $stage (prefix $prefix)"

# 2. What must be there.
need() { # need TEST PATH WHAT
	if ! test "$1" "$root$2"; then
		fail "$3: $2 is missing"
	fi
}
need -f "$libdir/libshmgroup.a" "static library"
need -L "$libdir/libshmgroup.so" "shared library (link-time name)"
need -e "$libdir/libshmgroup.so.0" "shared library (soname)"
need -f "$includedir/shmgroup.h" "header"
need -f "$libdir/pkgconfig/shmgroup.pc" "pkg-config file"
need -x "$bindir/shmgroupctl" "shmgroupctl"
need -x "$bindir/shmgroup-top" "shmgroup-top"
need -x "$sbindir/shmgroupd" "shmgroupd"
need -f "$mandir/man1/shmgroupctl.1" "man page"
need -f "$mandir/man1/shmgroup-top.1" "man page"
need -f "$mandir/man8/shmgroupd.8" "man page"
need -f "$mandir/man3/shmgroup.3" "man page"
need -f "$datadir/doc/shmgroup/examples/shmgroupd.conf.example" "example config"

# A man3 page (a file or a symlink that resolves) for every function.
functions=$(tr '\n' ' ' <"$src/include/shmgroup.h" |
	grep -o 'SHMG_EXPORT [^;(]*[ *]shmg_[a-z0-9_]*(' | grep -o 'shmg_[a-z0-9_]*($' |
	sed 's/($//' | sort -u)
[ -n "$functions" ] || fail "no SHMG_EXPORT functions found in include/shmgroup.h"
for f in $functions; do
	need -f "$mandir/man3/$f.3" "man page of $f"
done

# The unit, wherever the build put it (unless it was configured out), must
# start the installed agent.
units=$(find "$root" -name 'shmgroupd@.service')
unitdir_opt=$(meson introspect --buildoptions "$build" |
	python3 -c 'import json,sys; print([o["value"] for o in json.load(sys.stdin) if o["name"] == "systemdsystemunitdir"][0])')
if [ "$unitdir_opt" != no ]; then
	case "$units" in
	"")
		fail "systemd unit: shmgroupd@.service is not installed"
		;;
	*"
"*)
		fail "systemd unit: installed more than once: $units"
		;;
	*/systemd/system/shmgroupd@.service)
		exec_start=$(sed -n 's/^ExecStart=\([^ ]*\) .*/\1/p' "$units")
		if [ "$exec_start" != "$sbindir/shmgroupd" ]; then
			fail "systemd unit: ExecStart runs '$exec_start', not the installed $sbindir/shmgroupd"
		fi
		;;
	*)
		fail "systemd unit: not in a systemd/system directory: $units"
		;;
	esac
fi

# 3. A program built against the staged install, as a user would.
export PKG_CONFIG_PATH="$root$libdir/pkgconfig"
export PKG_CONFIG_SYSROOT_DIR="$root"
cc=${CC:-cc}
if ! cflags=$(pkg-config --cflags shmgroup) || ! libs=$(pkg-config --libs shmgroup); then
	fail "pkg-config cannot use the staged shmgroup.pc"
else
	case "$cflags $libs" in
	*"-I$root$includedir"*"-L$root$libdir"*) ;;
	*) fail "pkg-config points outside the stage: $cflags $libs" ;;
	esac
	# shellcheck disable=SC2086 # flags are words
	if ! $cc -std=c11 -Wall -Werror -o "$work/tour" "$src/examples/tour.c" $cflags $libs \
		>"$work/cc.log" 2>&1; then
		cat "$work/cc.log"
		fail "examples/tour.c does not build against the staged shared library"
	else
		lib_used=$(LD_LIBRARY_PATH="$root$libdir" ldd "$work/tour" | grep libshmgroup)
		case "$lib_used" in
		*"$root$libdir/libshmgroup.so.0"*) ;;
		*) fail "tour does not load the staged library: $lib_used" ;;
		esac
		if LD_LIBRARY_PATH="$root$libdir" "$work/tour" >"$work/tour.out" 2>&1 &&
			grep -q '^db/primary -> ' "$work/tour.out"; then
			echo "check-install: tour (shared) ran: $(head -n 1 "$work/tour.out")"
		else
			cat "$work/tour.out"
			fail "tour built against the staged shared library did not run"
		fi
	fi
	# The static library, with the private libraries the .pc lists.
	static_libs=$(pkg-config --static --libs shmgroup | sed 's/-lshmgroup//')
	# shellcheck disable=SC2086
	if ! $cc -std=c11 -Wall -Werror -o "$work/tour-static" "$src/examples/tour.c" $cflags \
		"$root$libdir/libshmgroup.a" $static_libs >"$work/cc-static.log" 2>&1; then
		cat "$work/cc-static.log"
		fail "examples/tour.c does not link against the staged static library"
	elif ldd "$work/tour-static" | grep -q libshmgroup; then
		fail "tour-static still loads a shared libshmgroup"
	elif ! "$work/tour-static" >"$work/tour-static.out" 2>&1 ||
		! grep -q '^db/primary -> ' "$work/tour-static.out"; then
		cat "$work/tour-static.out"
		fail "tour built against the staged static library did not run"
	fi
fi

if [ "$failures" -ne 0 ]; then
	echo "check-install: $failures problem(s)"
	exit 1
fi
echo "check-install: ok (library, header, .pc, tools, man pages, unit, example config; tour built and ran, shared and static)"
