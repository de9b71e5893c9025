//go:build agentonly

package main

// The agent-only build (make agent, bin/gpufleet-agent) has the node commands alone: no ClickHouse
// client, embedded engine or in-process broker is linked, which keeps the agent's memory small.
func serverCommands() []command { return nil }
