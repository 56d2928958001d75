// Command benchreport turns `go test -bench` output into BENCHMARKS.md: one
// table per package, one row per benchmark with its figures, ratios first. Ratios against same-run baselines are reported by the
// benchmarks themselves (metrics whose unit starts with "x-").
package main

import (
	"bufio"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"time"
)

type row struct {
	name    string
	metrics map[string]float64
}

type pkgRows struct {
	pkg  string
	rows []row
}

func main() {
	out := flag.String("o", "BENCHMARKS.md", "output file")
	flag.Parse()
	pkgs, err := parse(io.TeeReader(os.Stdin, os.Stdout))
	if err != nil {
		fmt.Fprintln(os.Stderr, "benchreport:", err)
		os.Exit(1)
	}
	f, err := os.Create(*out)
	if err != nil {
		fmt.Fprintln(os.Stderr, "benchreport:", err)
		os.Exit(1)
	}
	defer f.Close()
	write(f, pkgs)
	fmt.Fprintf(os.Stderr, "benchreport: wrote %s\n", *out)
}

func parse(r io.Reader) ([]*pkgRows, error) {
	var (
		pkgs []*pkgRows
		cur  *pkgRows
	)
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "pkg: ") {
			cur = &pkgRows{pkg: strings.TrimPrefix(line, "pkg: ")}
			pkgs = append(pkgs, cur)
			continue
		}
		if !strings.HasPrefix(line, "Benchmark") || cur == nil {
			continue
		}
		f := strings.Fields(line)
		if len(f) < 4 {
			continue
		}
		rw := row{name: strings.TrimPrefix(f[0], "Benchmark"), metrics: map[string]float64{}}
		// f[1] is the iteration count; then value/unit pairs.
		for i := 2; i+1 < len(f); i += 2 {
			v, err := strconv.ParseFloat(f[i], 64)
			if err != nil {
				break
			}
			rw.metrics[f[i+1]] = v
		}
		cur.rows = append(cur.rows, rw)
	}
	return pkgs, sc.Err()
}

func write(w io.Writer, pkgs []*pkgRows) {
	fmt.Fprintf(w, "# Benchmarks\n\nWritten by `make bench` on %s (%s/%s, %d CPUs).\n",
		time.Now().UTC().Format("2006-01-02 15:04 MST"), runtime.GOOS, runtime.GOARCH, runtime.NumCPU())
	fmt.Fprintln(w, "Figures whose unit starts with `x-` are ratios against a baseline measured in the same run;")
	fmt.Fprintln(w, "the absolute figures stand beside them. The machine is shared: compare ratios, not absolutes.")
	for _, p := range pkgs {
		if len(p.rows) == 0 {
			continue
		}
		fmt.Fprintf(w, "\n## %s\n\n| benchmark | figures |\n|---|---|\n", p.pkg)
		for _, r := range p.rows {
			units := make([]string, 0, len(r.metrics))
			for u := range r.metrics {
				units = append(units, u)
			}
			sort.Slice(units, func(i, j int) bool {
				if rank(units[i]) != rank(units[j]) {
					return rank(units[i]) < rank(units[j])
				}
				return units[i] < units[j]
			})
			custom := false
			for _, u := range units {
				custom = custom || rank(u) < 2
			}
			var cells []string
			for _, u := range units {
				if custom && rank(u) == 2 {
					continue // per-op figures of a one-shot benchmark say nothing
				}
				cells = append(cells, format(r.metrics[u])+" "+u)
			}
			fmt.Fprintf(w, "| %s | %s |\n", r.name, strings.Join(cells, " · "))
		}
	}
}

// rank puts ratios first, then the custom metrics, then the standard ones.
func rank(unit string) int {
	switch {
	case strings.HasPrefix(unit, "x-"):
		return 0
	case unit == "ns/op" || unit == "B/op" || unit == "allocs/op":
		return 2
	default:
		return 1
	}
}

func format(v float64) string {
	switch {
	case v == 0:
		return "0"
	case v >= 100:
		return strconv.FormatFloat(v, 'f', 0, 64)
	case v >= 1:
		return strconv.FormatFloat(v, 'f', 2, 64)
	default:
		return strconv.FormatFloat(v, 'g', 3, 64)
	}
}
