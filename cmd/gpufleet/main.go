// Command gpufleet is the GPU-fleet telemetry pipeline: agent, ingest, migrate, query, demo and
// simulate in one binary. See `gpufleet help`.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/gpufleet/gpufleet/internal/kafka"
)

func main() {
	// kafka-go's codecs are one table per process: set before any client starts.
	kafka.InstallLeanZstd()
	// First SIGTERM/SIGINT cancels ctx: commands flush in-flight data and exit. A second one
	// kills the process the default way, for when flushing hangs.
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	go func() {
		<-ctx.Done()
		stop()
	}()
	os.Exit(Run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}
