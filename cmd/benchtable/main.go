// Command benchtable turns `go test -bench` output on standard input into one markdown table of
// every figure, its goal and its ratio to the goal's limit, on standard output and in the file -o
// names (make bench).
package main

import (
	"bytes"
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/gpufleet/gpufleet/internal/benchtable"
)

func main() {
	out := flag.String("o", "", "also write the table to this file")
	flag.Usage = func() {
		fmt.Fprintln(flag.CommandLine.Output(), "usage: go test -run '^$' -bench . ./... | benchtable [-o FILE]")
		flag.PrintDefaults()
	}
	flag.Parse()
	if err := run(os.Stdin, os.Stdout, *out); err != nil {
		fmt.Fprintln(os.Stderr, "benchtable:", err)
		os.Exit(1)
	}
}

func run(in io.Reader, stdout io.Writer, file string) error {
	figs, err := benchtable.Parse(in)
	if err != nil {
		return err
	}
	var b bytes.Buffer
	if err := benchtable.Markdown(&b, figs, benchtable.Goals); err != nil {
		return err
	}
	if file != "" {
		if err := os.WriteFile(file, b.Bytes(), 0o644); err != nil {
			return fmt.Errorf("write -o: %w", err)
		}
	}
	_, err = stdout.Write(b.Bytes())
	return err
}
