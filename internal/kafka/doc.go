// Package kafka is the pipeline's adapter to Apache Kafka, the one place outside ingest's group
// loop that speaks kafka-go (imported here as kafkago, so that "kafka" in the rest of the tree means
// this package). It holds the connection settings every client shares — TLS (CA, client
// certificate, server name) and SASL (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512), so that one setting
// means the same thing everywhere and a refused connection is explained the same way — and the
// broker chores agents, ingest, demo and the topic set-up share: waiting for a broker to answer,
// creating the pipeline's topics (an admin step: `gpufleet topics`) and checking that they exist,
// and that the consumer group may be used, before producing or consuming. Producer is the agent's
// Sender: it delivers wire.Messages and turns kafka-go's outcomes into this package's errors
// (ProduceError, SettingError), so that the agent and its spool never see a kafka-go type.
package kafka
