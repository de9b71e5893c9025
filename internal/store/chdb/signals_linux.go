package chdb

import (
	"syscall"
	"unsafe"
)

// The engine installs its own crash handlers (SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT, SIGTRAP,
// SIGSYS) when it starts. Over Go's, they turn a nil dereference anywhere in the process from a
// panic with a stack trace into a silent hang, so gpufleet puts Go's handlers back after the engine
// has started. Signals Go did not handle (the engine's SIGRTMIN stack collector) keep the engine's.

// kernelSigaction is struct sigaction as the rt_sigaction system call takes it on linux/amd64 and
// linux/arm64.
type kernelSigaction struct {
	handler, flags, restorer, mask uintptr
}

var crashSignals = []syscall.Signal{syscall.SIGILL, syscall.SIGTRAP, syscall.SIGABRT, syscall.SIGBUS,
	syscall.SIGFPE, syscall.SIGSEGV, syscall.SIGSYS}

type savedHandlers map[syscall.Signal]kernelSigaction

func saveCrashHandlers() savedHandlers {
	s := savedHandlers{}
	for _, sig := range crashSignals {
		var old kernelSigaction
		if _, _, errno := syscall.RawSyscall6(syscall.SYS_RT_SIGACTION, uintptr(sig), 0,
			uintptr(unsafe.Pointer(&old)), unsafe.Sizeof(old.mask), 0, 0); errno == 0 && old.handler != 0 {
			s[sig] = old
		}
	}
	return s
}

func (s savedHandlers) restore() {
	for sig, act := range s {
		syscall.RawSyscall6(syscall.SYS_RT_SIGACTION, uintptr(sig), uintptr(unsafe.Pointer(&act)), 0,
			unsafe.Sizeof(act.mask), 0, 0)
	}
}
