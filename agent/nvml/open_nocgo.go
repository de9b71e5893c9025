//go:build !cgo

package nvml

import "errors"

// Open reports that this binary cannot read NVML: go-nvml loads libnvidia-ml.so.1 through cgo,
// and this build had CGO_ENABLED=0 (the distroless image does).
func Open() (Lib, func() error, error) {
	return nil, nil, &Error{Op: "nvmlInit", Name: "this gpufleet was built with CGO_ENABLED=0 and cannot load NVML; rebuild with CGO_ENABLED=1",
		Kind: errors.Join(ErrLibraryNotFound, errors.ErrUnsupported)}
}
