# SPDX-License-Identifier: MIT
#
# Lookup latency percentiles per implementation, one panel per run.
# Called by run-standard.sh:
#   gnuplot -e "files='a.dat b.dat'; titles='t1 t2'; out='x.png'" plot.gp
# Each .dat file has one row per implementation:
#   impl  p50  p90  p99  p99.9   (nanoseconds)
# Titles are single words ('_' is shown as a space).

if (!exists("files")) files = "lookup.dat"
if (!exists("titles")) titles = files
if (!exists("out")) out = "lookup.png"

n = words(files)
cols = (n > 1) ? 2 : 1
rows = (n + cols - 1) / cols

set encoding utf8
set terminal pngcairo size 640*cols, 420*rows font "sans,9"
set output out
set multiplot layout rows, cols

set style data histograms
set style histogram clustered gap 1
set style fill solid 0.85 border -1
set boxwidth 0.9
set logscale y
set format y "%.0s%cs"
set ytics nomirror
set grid ytics
set key top left horizontal font ",8"
set xtics nomirror rotate by -30 font ",8"
set ylabel "latency per lookup"

do for [i=1:n] {
    f = word(files, i)
    t = word(titles, i)
    set title system("printf '%s' '".t."' | tr _ ' '")
    plot f using ($2*1e-9):xtic(1) title "p50" lc rgb "#2b83ba", \
         '' using ($3*1e-9) title "p90" lc rgb "#abdda4", \
         '' using ($4*1e-9) title "p99" lc rgb "#fdae61", \
         '' using ($5*1e-9) title "p99.9" lc rgb "#d7191c"
}
unset multiplot
