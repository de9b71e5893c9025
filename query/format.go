package query

import (
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

// WriteSeries prints series as an aligned table ("text"), CSV ("csv", one row per point with a
// column per group label) or JSON ("json").
func WriteSeries(w io.Writer, format string, groupBy []Dim, series []Series) error {
	switch format {
	case "json":
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		if series == nil {
			series = []Series{}
		}
		return enc.Encode(series)
	case "csv":
		cw := csv.NewWriter(w)
		header := []string{"t"}
		for _, d := range groupBy {
			header = append(header, d.Name())
		}
		if err := cw.Write(append(header, "value")); err != nil {
			return err
		}
		for _, s := range series {
			for _, p := range s.Points {
				rec := []string{p.T.UTC().Format(time.RFC3339)}
				for _, d := range groupBy {
					rec = append(rec, s.Labels[d.Name()])
				}
				v := ""
				if p.Value != nil {
					v = strconv.FormatFloat(*p.Value, 'g', -1, 64)
				}
				cw.Write(append(rec, v))
			}
		}
		cw.Flush()
		return cw.Error()
	default:
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprint(tw, "TIME")
		for _, d := range groupBy {
			fmt.Fprintf(tw, "\t%s", strings.ToUpper(d.Name()))
		}
		fmt.Fprintln(tw, "\tVALUE")
		for _, s := range series {
			for _, p := range s.Points {
				fmt.Fprint(tw, p.T.UTC().Format("2006-01-02 15:04:05"))
				for _, d := range groupBy {
					fmt.Fprintf(tw, "\t%s", s.Labels[d.Name()])
				}
				if p.Value == nil {
					fmt.Fprintln(tw, "\t-")
				} else {
					fmt.Fprintf(tw, "\t%.3f\n", *p.Value)
				}
			}
		}
		return tw.Flush()
	}
}
