package main

import "runtime/debug"

// agentGOGC is the agent's GC target when GOGC is not set. Its live heap is a few MiB (most of it
// the Kafka writer's zstd encoder), so the runtime's default of 100 lets the heap reach twice that
// between collections; 50 keeps about 3 MiB less resident (deploy/dev/agent-rss.sh) for about
// 1.5 ms more CPU a second at 8 GPUs. A soft memory limit near the live heap cut more, but kept
// the collector running nearly non-stop (9× the agent's CPU at 6 MiB): not a default for a GPU
// node.
const agentGOGC = 50

// setAgentGC applies agentGOGC unless GOGC is set, which the runtime has then applied itself; it
// reports whether it did.
func setAgentGC(getenv func(string) string) bool {
	if getenv("GOGC") != "" {
		return false
	}
	debug.SetGCPercent(agentGOGC)
	return true
}
