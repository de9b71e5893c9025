package ingest

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/gpufleet/gpufleet/internal/schema"
)

// metrics are the ingester's Prometheus series; rows/s is rate(gpufleet_ingest_sample_rows_total).
type metrics struct {
	insertSeconds prometheus.Histogram
	batchRows     prometheus.Histogram
	batchAge      prometheus.Histogram
	e2eDelay      prometheus.Histogram
	retries       *prometheus.CounterVec
	lag           *prometheus.GaugeVec
	nulled        *prometheus.CounterVec
	clockSkew     prometheus.Histogram
	dlqLost       prometheus.Counter
	commitsLost   prometheus.Counter
	foldSeconds   prometheus.Histogram
	foldRows      prometheus.Histogram
}

func newMetrics() metrics {
	return metrics{
		insertSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "gpufleet_ingest_insert_seconds",
			Help: "Time for ClickHouse to acknowledge one batch insert.", Buckets: prometheus.ExponentialBuckets(0.005, 2, 12)}),
		batchRows: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "gpufleet_ingest_batch_rows",
			Help: "Rows per inserted batch.", Buckets: prometheus.ExponentialBuckets(10, 4, 9)}),
		batchAge: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "gpufleet_ingest_batch_age_seconds",
			Help: "Time from a batch's first message to its commit.", Buckets: prometheus.ExponentialBuckets(0.01, 2, 12)}),
		e2eDelay: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "gpufleet_ingest_end_to_end_delay_seconds",
			Help:    "Time from a sample's timestamp on the agent to ClickHouse acknowledging its insert.",
			Buckets: prometheus.ExponentialBuckets(0.05, 2, 14)}),
		retries: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "gpufleet_ingest_retries_total",
			Help: "Steps retried after an error (ClickHouse insert, range record, dead-letter write, commit)."}, []string{"step"}),
		lag: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "gpufleet_ingest_consumer_lag_messages",
			Help: "Messages in the partition after the last one this worker fetched."}, []string{"topic", "partition"}),
		nulled: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "gpufleet_ingest_values_nulled_total",
			Help: "Readings stored as NULL: gauges NaN, infinite or outside the metric's plausible range, counters at or over 2^63 (a negative number sent unsigned)."}, []string{"metric"}),
		clockSkew: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "gpufleet_ingest_clock_skew_seconds",
			Help:    "How far a message's newest timestamp was ahead of the ingest clock, for messages ahead by more than the tolerance (the agent's clock is wrong).",
			Buckets: prometheus.ExponentialBuckets(5, 2, 11)}), // 5 s to 1.4 h: up to MaxClockAhead
		dlqLost: prometheus.NewCounter(prometheus.CounterOpts{Name: "gpufleet_ingest_dlq_dropped_total",
			Help: "Dead letters the dead-letter topic refused even truncated to their headers, logged and dropped."}),
		commitsLost: prometheus.NewCounter(prometheus.CounterOpts{Name: "gpufleet_ingest_commits_lost_total",
			Help: "Cuts not committed because the group had moved on (a refused commit) or the flush ran out of time at a rebalance or shutdown; nothing is lost: the next owner replays the range and the insert's token drops what was stored."}),
		foldSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "gpufleet_ingest_fold_insert_seconds",
			Help: "Time for ClickHouse to acknowledge one fold's insert into a rollup (" + schema.GPU1m + ", or " + schema.GPU1h + "'s feed).", Buckets: prometheus.ExponentialBuckets(0.005, 2, 12)}),
		foldRows: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "gpufleet_ingest_fold_rows",
			Help: "Partial rows per fold inserted into a rollup (GPU-minutes into " + schema.GPU1m + ", GPU-hours into " + schema.GPU1h + ").", Buckets: prometheus.ExponentialBuckets(10, 4, 9)}),
	}
}

func (m metrics) register(r prometheus.Registerer, in *Ingester) {
	counter := func(name, help string, v func() uint64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help}, func() float64 { return float64(v()) })
	}
	r.MustRegister(m.insertSeconds, m.batchRows, m.batchAge, m.e2eDelay, m.retries, m.lag, m.nulled, m.clockSkew, m.dlqLost, m.commitsLost,
		m.foldSeconds, m.foldRows,
		counter("gpufleet_ingest_folds_total", "Folds of "+schema.GPU1m+" and "+schema.GPU1h+" inserted and committed (Config.Fold).", in.nFolds.Load),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "gpufleet_ingest_fold_held_messages",
			Help: "Messages inserted into the raw tables whose offsets wait for their fold's inserts into the rollups to be committed."},
			func() float64 { return float64(in.foldHeld.Load()) }),
		counter("gpufleet_ingest_sample_rows_total", "Sample rows inserted.", in.nSamples.Load),
		counter("gpufleet_ingest_event_rows_total", "Event rows inserted.", in.nEvents.Load),
		counter("gpufleet_ingest_dlq_total", "Messages sent to the dead-letter topic.", in.nDLQ.Load),
		counter("gpufleet_ingest_dlq_truncated_total", "Dead letters sent truncated because the dead-letter topic refused them whole.", in.nTruncated.Load),
		counter("gpufleet_ingest_messages_committed_total", "Kafka messages committed after insert (with Config.Fold, after their fold's insert).", in.nMessages.Load),
		counter("gpufleet_ingest_sequence_gaps_total", "Batches agents numbered that never reached ingest.", in.nGaps.Load),
		counter("gpufleet_ingest_gaps_recorded_total", "Rows written to "+schema.IngestGaps+": jumps in an agent's sequence numbers, each spanning one or more missing batches.", in.nGapsRecorded.Load),
		counter("gpufleet_ingest_fetch_errors_total", "Partition fetches that failed and were retried with backoff.", in.nFetchErrors.Load),
		counter("gpufleet_ingest_duplicate_batches_total", "Sample and event messages dropped as a repeat of one already taken or stored (producer retries).", in.nDuplicates.Load),
		counter("gpufleet_ingest_messages_fetched_total", "Messages fetched from Kafka (committed or not yet), each counted once however often it is fetched again.", in.nFetched.Load),
		counter("gpufleet_ingest_generations_total", "Consumer group generations joined (start-up and rebalances).", in.nRebalances.Load),
	)
}
