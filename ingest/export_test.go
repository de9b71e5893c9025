package ingest

// SetCrashAfterInsert installs the test hook that stops a worker between insert and commit.
func SetCrashAfterInsert(in *Ingester, crash func() bool) { in.crashAfterInsert = crash }

// ErrCrashed is what Run returns when that hook fired.
var ErrCrashed = errCrashed

// SetCrashAfterFold installs the test hook that stops a worker between a fold's insert and its commit.
func SetCrashAfterFold(in *Ingester, crash func() bool) { in.crashAfterFold = crash }
