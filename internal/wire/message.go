package wire

// Message is one message as agents send it: the topic it goes to (SamplesTopic or EventsTopic
// unless configured otherwise), the key that picks its partition (the node, so that each node's
// stream stays ordered) and the encoded batch. It is the agent's unit of sending and spooling,
// independent of the Kafka client that delivers it.
type Message struct {
	Topic string
	Key   []byte
	Value []byte
}
