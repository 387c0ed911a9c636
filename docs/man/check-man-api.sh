#!/bin/sh
# SPDX-License-Identifier: MIT
#
# check-man-api.sh SHMGROUP.h NAME=PAGE...
#
# The library's pages and the header agree.  NAME=PAGE pairs are every name
# installed in man3 (a family page under its own name, and a symlink to it for
# each other function of the family).  Fails if
#  - a function the header declares with SHMG_EXPORT has no man3 name;
#  - a name is not a function of the header (other than the overview,
#    shmgroup), or its page's SYNOPSIS does not declare it;
#  - a page's SYNOPSIS declares a function the header does not, or one that
#    its NAME section does not list.
set -u
header=$1
shift

declared=$(tr '\n' ' ' <"$header" | grep -o 'SHMG_EXPORT [^;(]*[ *]shmg_[a-z0-9_]*(' |
	grep -o 'shmg_[a-z0-9_]*($' | sed 's/($//' | sort -u)
if [ -z "$declared" ]; then
	echo "FAIL: found no SHMG_EXPORT declarations in $header"
	exit 1
fi

# Functions declared in a page's SYNOPSIS (names followed by '(').
synopsis() {
	sed -n '/^\.SH SYNOPSIS/,/^\.SH /p' "$1" | grep -o 'shmg_[a-z0-9_]*(' | sed 's/($//' |
		sort -u
}
# Names listed in a page's NAME section (before the \- ).
names() {
	sed -n '/^\.SH NAME/,/^\.SH /p' "$1" | sed -n '2p' | sed 's/ \\-.*//' | tr ',' '\n' |
		tr -d ' ' | grep . | sort -u
}

status=0
names_seen=
pages=
for pair in "$@"; do
	name=${pair%%=*}
	page=${pair#*=}
	names_seen="$names_seen $name"
	case " $pages " in *" $page "*) ;; *) pages="$pages $page" ;; esac
	[ "$name" = shmgroup ] && continue
	if ! echo "$declared" | grep -qx "$name"; then
		echo "FAIL: man page name $name is not a function of $header"
		status=1
	elif ! synopsis "$page" | grep -qx "$name"; then
		echo "FAIL: $name is installed as $(basename "$page") but its SYNOPSIS does not declare it"
		status=1
	fi
done
for f in $declared; do
	case " $names_seen " in
	*" $f "*) ;;
	*)
		echo "FAIL: $f is declared in $header but has no man page"
		status=1
		;;
	esac
done
for page in $pages; do
	listed=$(names "$page")
	for f in $(synopsis "$page"); do
		if ! echo "$declared" | grep -qx "$f"; then
			echo "FAIL: $(basename "$page") declares $f, which $header does not"
			status=1
		fi
		if ! echo "$listed" | grep -qx "$f"; then
			echo "FAIL: $(basename "$page") declares $f but its NAME section does not list it"
			status=1
		fi
	done
done
[ "$status" -eq 0 ] &&
	echo "ok: all $(echo "$declared" | wc -l) functions of $(basename "$header") have a page that declares them"
exit "$status"
