package spool

import "os"

// TraceDurability makes s report each fsync, rename and directory fsync, in order, to trace
// before doing it.
func TraceDurability(s *Spool, trace func(op, name string)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ops = tracer{s.ops, trace}
}

type tracer struct {
	durability
	trace func(op, name string)
}

func (t tracer) Sync(f *os.File) error {
	t.trace("sync", f.Name())
	return t.durability.Sync(f)
}

func (t tracer) Rename(from, to string) error {
	t.trace("rename", from+" -> "+to)
	return t.durability.Rename(from, to)
}

func (t tracer) SyncDir(dir string) error {
	t.trace("syncdir", dir)
	return t.durability.SyncDir(dir)
}
