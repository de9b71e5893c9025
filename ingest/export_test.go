package ingest

// SetCrashAfterInsert installs the test hook that stops a worker between insert and commit.
func SetCrashAfterInsert(in *Ingester, crash func() bool) { in.crashAfterInsert = crash }

// ErrCrashed is what Run returns when that hook fired.
var ErrCrashed = errCrashed
