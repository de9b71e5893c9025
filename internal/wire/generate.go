package wire

//go:generate protoc --go_out=. --go_opt=module=github.com/gpufleet/gpufleet/internal/wire gpufleet.proto
