# Grouped bars of the median paired ratio ringmaster/HAProxy per mode and test (written by
# summarize.py): above the dashed line at 1.0, ringmaster does more per CPU-second (or uses less
# memory per idle connection).
#   gnuplot -e "datafile='chart.dat'; outfile='chart.svg'" benches/compare/chart.gp
set terminal svg size 1000,560 dynamic enhanced font "sans,13" background rgb "white"
set output outfile
set title "ringmaster / HAProxy, one core each: median of paired ratios (> 1 = ringmaster better)"
set datafile separator "\t"
set datafile missing "NaN"
set key autotitle columnhead
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.85 border -1
set key below horizontal
set grid ytics
set ylabel "ringmaster / HAProxy"
set yrange [0:*]
set xrange [-0.6:3.6]
set xtics nomirror
set ytics nomirror
set border 3
set bmargin 6
set arrow from graph 0, first 1 to graph 1, first 1 nohead dt 2 lw 2 lc rgb "black" front
ncols = 4
gap = 1.0
# Centre of bar j (data column 2..5) of row x0: the ncols bars are centred on x0, each
# 1 / (ncols + gap) wide.
xpos(x0, j) = x0 + (j - 2 - (ncols - 1) / 2.0) / (ncols + gap)
plot for [j=2:5] datafile using j:xtic(1) lc j-1, \
     for [j=2:5] datafile using (xpos($0, j)):(column(j)):(sprintf("%.2f", column(j))) \
         with labels offset 0,0.7 font ",10" notitle, \
     NaN with lines dt 2 lw 2 lc rgb "black" title "HAProxy = 1.0"
