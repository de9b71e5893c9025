package agent

import (
	"context"
	"log/slog"

	"github.com/gpufleet/gpufleet/internal/health"
	"github.com/gpufleet/gpufleet/internal/wire/wirepb"
)

// healthEval applies the health rules (internal/health) to each source's GPUs after every
// sample, one Evaluator per source: its per-GPU state is bounded by the source's GPUs.
type healthEval struct {
	ev  []*health.Evaluator
	log *slog.Logger
}

func newHealthEval(cfg health.Config, sources int, log *slog.Logger) *healthEval {
	h := &healthEval{log: log}
	for range sources {
		h.ev = append(h.ev, health.NewEvaluator(cfg))
	}
	return h
}

// observe evaluates source i's rows of b from first on and its events from evFirst on, and
// appends an EVENT_KIND_HEALTH event for every GPU whose state changed (or was evaluated for the
// first time since the agent started, so the fleet learns the state the GPU is in).
func (h *healthEval) observe(ctx context.Context, i int, b *wirepb.SampleBatch, first int, ev []*wirepb.Event, evFirst int) []*wirepb.Event {
	for _, t := range h.ev[i].Observe(b, first, ev[evFirst:]) {
		ev = append(ev, t.Event())
		if t.To == health.Healthy && t.First {
			continue
		}
		lvl := slog.LevelInfo
		if t.To > t.From || t.First {
			lvl = slog.LevelWarn
		}
		h.log.Log(ctx, lvl, "GPU health changed", slog.Uint64("gpu", uint64(t.GPUIndex)), slog.String("uuid", t.UUID),
			slog.String("from", t.From.String()), slog.String("to", t.To.String()), slog.String("reason", t.Message))
	}
	return ev
}
