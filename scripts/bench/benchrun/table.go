package main

import (
	"fmt"
	"io"
	"slices"
	"text/tabwriter"
)

// row is the runs of one scenario in one publish mode with one build.
type row struct {
	sc      scenario
	mode    string
	build   string
	results []result
}

// med returns the median of f over the row's runs.
func (r *row) med(f func(result) float64) float64 {
	v := make([]float64, len(r.results))
	for i, res := range r.results {
		v[i] = f(res)
	}
	return median(v)
}

// firstAll is the median time until every tag's first value, in seconds;
// ok is false when the median run never saw every tag.
func (r *row) firstAll() (float64, bool) {
	all := r.med(func(res result) float64 {
		if res.seen < res.want {
			return 1e18 // never: sorts last
		}
		return res.firstAll.Seconds()
	})
	return all, all < 1e18
}

func printTable(out io.Writer, rows []*row, withBase bool) {
	w := tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
	head := "scenario\tmode\tbuild\tPLCs\ttags\tinterval\truns\toffered/s\tvalues/s\tlost int32\tdups int32\tCPU µs/value\tpeak RSS MB\tRSS MB\tp50 ms\tp99 ms\tall tags first value s\tplcsim CPU %\t"
	if withBase {
		head += "CPU/value ÷ baseline\tRSS ÷ baseline\t"
	}
	fmt.Fprintln(w, head)
	base := map[string]*row{}
	for _, r := range rows {
		if r.build == buildBaseline {
			base[r.sc.name+" "+r.mode] = r
		}
	}
	for _, r := range rows {
		fmt.Fprintf(w, "%s\t%s\t%s\t%d\t%d\t%s\t%d\t%.0f\t", r.sc.name, r.mode, r.build, r.sc.plcs, r.sc.tags, r.sc.interval, len(r.results), r.sc.offered())
		if len(r.results) == 0 {
			fmt.Fprint(w, "-\t-\t-\t-\t-\t-\t-\t-\t-\t-\t")
			if withBase {
				fmt.Fprint(w, "-\t-\t")
			}
			fmt.Fprintln(w)
			continue
		}
		first := "-"
		if all, ok := r.firstAll(); ok {
			first = fmt.Sprintf("%.2f", all)
		}
		rss := r.med(func(res result) float64 { return res.rssMB })
		cpu := r.med(func(res result) float64 { return res.cpuPerValue })
		if r.sc.startup {
			// Only the start is measured.
			fmt.Fprintf(w, "-\t-\t-\t-\t%.1f\t-\t-\t-\t%s\t-\t", rss, first)
		} else {
			fmt.Fprintf(w, "%.0f\t%.0f\t%.0f\t%.2f\t%.1f\t%.1f\t%.1f\t%.1f\t%s\t%.0f\t",
				r.med(func(res result) float64 { return res.valuesPerSec }),
				r.med(func(res result) float64 { return float64(res.lost) }),
				r.med(func(res result) float64 { return float64(res.dups) }),
				cpu, rss,
				r.med(func(res result) float64 { return res.rssEndMB }),
				r.med(func(res result) float64 { return res.p50 }),
				r.med(func(res result) float64 { return res.p99 }),
				first,
				r.med(func(res result) float64 { return res.cpuPLCs }))
		}
		if withBase {
			b := base[r.sc.name+" "+r.mode]
			switch {
			case r.build == buildBaseline || b == nil || len(b.results) == 0:
				fmt.Fprint(w, "-\t-\t")
			case r.sc.startup:
				// The start's CPU time in place of CPU per value.
				fmt.Fprintf(w, "%s\t%s\t", ratio(r.med(func(res result) float64 { return res.startCPU }), b.med(func(res result) float64 { return res.startCPU })),
					ratio(rss, b.med(func(res result) float64 { return res.rssMB })))
			default:
				fmt.Fprintf(w, "%s\t%s\t", ratio(cpu, b.med(func(res result) float64 { return res.cpuPerValue })),
					ratio(rss, b.med(func(res result) float64 { return res.rssMB })))
			}
		}
		fmt.Fprintln(w)
	}
	w.Flush()
}

func ratio(a, b float64) string {
	if b == 0 {
		return "-"
	}
	return fmt.Sprintf("%.2f", a/b)
}

func percentile(sorted []float64, q float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	return sorted[min(len(sorted)-1, int(q*float64(len(sorted))))]
}

func median(v []float64) float64 {
	slices.Sort(v)
	n := len(v)
	if n%2 == 1 {
		return v[n/2]
	}
	return (v[n/2-1] + v[n/2]) / 2
}
