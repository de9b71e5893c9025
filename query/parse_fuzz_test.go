package query_test

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gpufleet/gpufleet/internal/store"
	"github.com/gpufleet/gpufleet/query"
)

// A filter comes from a URL, a CLI flag or a dashboard variable. What ParseFilter accepts is a
// filter Validate accepts, that prints back to itself, and whose values are bound as one parameter,
// never pasted into the SQL; what it refuses, its error quotes.
func FuzzParseFilter(f *testing.F) {
	for _, s := range []string{"node=node-00001", "cluster=a|b|c", "gpu=GPU-1", "uuid=GPU-1", "job=", "job=||",
		"model=NVIDIA H100 80GB HBM3", "rack=r1", "pool=p", "datacenter=x", "=x", "node", "", "node==x",
		"node=x'; DROP TABLE gpu_samples --", "job_id=1", "node=\xff"} {
		f.Add(s)
	}
	from := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, s string) {
		flt, err := query.ParseFilter(s)
		if err != nil {
			if !strings.Contains(err.Error(), fmt.Sprintf("%q", s)) {
				t.Fatalf("error %q does not quote the filter %q", err, s)
			}
			return
		}
		again, err := query.ParseFilter(flt.Dim.Name() + "=" + strings.Join(flt.Values, "|"))
		if err != nil || again.Dim != flt.Dim || !slices.Equal(again.Values, flt.Values) {
			t.Fatalf("%q parsed as %+v, which prints back as %+v (%v)", s, flt, again, err)
		}
		q := query.Query{Metric: "gpu_util", Agg: query.Avg, GroupBy: []query.Dim{flt.Dim}, Filters: []query.Filter{flt},
			From: from, To: from.Add(time.Hour), Step: time.Minute}
		if err := q.Validate(); err != nil {
			t.Fatalf("accepted filter %+v is an invalid query: %v", flt, err)
		}
		c, err := q.Compile("db")
		if err != nil {
			t.Fatalf("accepted filter %+v does not compile: %v", flt, err)
		}
		if got, want := c.Params["f0"], store.FormatArray(flt.Values); got != want {
			t.Fatalf("filter values bound as %q, want %q", got, want)
		}
	})
}

// Group-by names come from the same places, comma-separated. What ParseDims accepts are known
// dimensions that name themselves back; what it refuses, its error quotes the first unknown name of.
func FuzzParseDims(f *testing.F) {
	for _, s := range []string{"cluster", "cluster,node", " gpu , job ", "uuid", "model,rack,pool", "", ",", "job_id",
		"node,datacenter,x", "Node", "\xff"} {
		f.Add(s)
	}
	known := map[query.Dim]bool{}
	for _, n := range strings.Split(query.DimNames, ", ") {
		d, ok := query.DimByName(n)
		if !ok {
			f.Fatalf("DimNames lists %q, which DimByName does not know", n)
		}
		known[d] = true
	}
	f.Fuzz(func(t *testing.T, s string) {
		names := strings.Split(s, ",")
		ds, err := query.ParseDims(names)
		if err != nil {
			for _, n := range names {
				if _, ok := query.DimByName(strings.TrimSpace(n)); !ok {
					if !strings.Contains(err.Error(), fmt.Sprintf("%q", n)) {
						t.Fatalf("error %q does not quote the first unknown name %q", err, n)
					}
					return
				}
			}
			t.Fatalf("refused %q, every name of which is known: %v", s, err)
		}
		if len(ds) != len(names) {
			t.Fatalf("%q: %d names, %d dims", s, len(names), len(ds))
		}
		for i, d := range ds {
			if !known[d] {
				t.Fatalf("%q: dim %q is not one of %s", names[i], d, query.DimNames)
			}
			if back, ok := query.DimByName(d.Name()); !ok || back != d {
				t.Fatalf("dim %q names itself %q, which reads back as %q", d, d.Name(), back)
			}
		}
	})
}
