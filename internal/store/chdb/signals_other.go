//go:build !linux

package chdb

type savedHandlers struct{}

func saveCrashHandlers() savedHandlers { return savedHandlers{} }

func (savedHandlers) restore() {}
