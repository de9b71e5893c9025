package ingest

import "time"

// Per-agent state: the last sequence number (gaps) and the latest batches (repeats). A fleet's
// agent ids come and go (re-imaged nodes, autoscaled pools, a misconfigured agent sending a new
// id each start), so the state of ids not seen for a while must go, or ingest memory grows by
// about 1.3 KiB for every id ever seen (200,000 ids: 237 MiB of heap, BenchmarkAgentIDs).
//
// Forgetting an agent is safe: its next batch is treated as its first in a generation, looked up
// in gpu_samples as a possible repeat (repeats.go) and not checked for a gap.

// agentStateBytes is the heap one agent's state takes (the state, its map slot and its id),
// measured by BenchmarkAgentIDs; MemoryBound counts AgentStateMax of them.
const agentStateBytes = 1344

// agentState is what the batcher remembers of one agent.
type agentState struct {
	// seq is the agent's last sequence number, seen in run: a gap is only counted when the next
	// batch comes in the same run, i.e. this worker read every message of the partition in between.
	seq uint64
	run uint64
	// gen is the generation recent belongs to; recent is empty in any other (see batch).
	gen    uint64
	recent recent
}

// agentTable bounds the agent states: two maps, the current and the previous. A state used is
// moved to the current map; when that holds max/2 states or half of idle has passed, the previous
// map is dropped and the current one becomes the previous. So at most max states are kept, and a
// state unused for idle (or for max/2 other agents' first batches) is gone. Dropping a whole map
// also gives its memory back, which deleting entries from a Go map never does.
type agentTable struct {
	cur, old map[string]*agentState
	max      int
	idle     time.Duration
	rotated  time.Time
}

func newAgentTable(max int, idle time.Duration, now time.Time) *agentTable {
	return &agentTable{cur: map[string]*agentState{}, max: max, idle: idle, rotated: now}
}

// get returns id's state, a fresh one (second result true) when it has none.
func (t *agentTable) get(id string) (*agentState, bool) {
	if a := t.cur[id]; a != nil {
		return a, false
	}
	a := t.old[id]
	fresh := a == nil
	if fresh {
		a = &agentState{}
	} else {
		delete(t.old, id)
	}
	if len(t.cur) >= max(t.max/2, 1) {
		t.rotate(time.Now())
	}
	t.cur[id] = a
	return a, fresh
}

// peek returns id's state or nil, without keeping it.
func (t *agentTable) peek(id string) *agentState {
	if a := t.cur[id]; a != nil {
		return a
	}
	return t.old[id]
}

// expire drops the states unused for half of idle or more, once per half of idle.
func (t *agentTable) expire(now time.Time) {
	if now.Sub(t.rotated) >= t.idle/2 || now.Before(t.rotated) {
		t.rotate(now)
	}
}

func (t *agentTable) rotate(now time.Time) {
	t.old, t.cur = t.cur, make(map[string]*agentState, len(t.cur))
	t.rotated = now
}

// len is the number of agent states kept.
func (t *agentTable) len() int { return len(t.cur) + len(t.old) }
