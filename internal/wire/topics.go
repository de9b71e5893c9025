package wire

// The pipeline's default topic names (see DESIGN.md): agents write SampleBatch messages to
// SamplesTopic and EventBatch messages to EventsTopic, keyed by node; ingest reads both and sends
// what it cannot decode to DLQTopic. Every component takes them from here, so that agents and
// ingest cannot disagree on where the stream is.
const (
	SamplesTopic = "gpu.samples"
	EventsTopic  = "gpu.events"
	DLQTopic     = "gpu.dlq"
)
