package attribution

import (
	"context"
	"strconv"
)

// Assignment names the job on each GPU of the node: by NVML index (Slurm mapping files) or by GPU
// UUID (the kubelet). A GPU named by neither runs no job.
type Assignment struct {
	ByIndex map[uint32]string
	ByUUID  map[string]string
}

// Job is the job on the GPU with this index and UUID, or "".
func (a Assignment) Job(index uint32, uuid string) string {
	if j, ok := a.ByUUID[uuid]; ok {
		return j
	}
	return a.ByIndex[index]
}

// Assign is Jobs as an Assignment by index.
func (m MappingDir) Assign(context.Context) (Assignment, error) {
	jobs, err := m.Jobs()
	return Assignment{ByIndex: jobs}, err
}

// Assign is Jobs as an Assignment by UUID, and by index for the device ids that are a GPU's NVML
// index (the device plugin's DEVICE_ID_STRATEGY=index).
func (p *PodResources) Assign(ctx context.Context) (Assignment, error) {
	jobs, err := p.Jobs(ctx)
	if err != nil {
		return Assignment{}, err
	}
	a := Assignment{ByUUID: jobs}
	for id, job := range jobs {
		if n, err := strconv.ParseUint(id, 10, 8); err == nil && allDigits([]byte(id)) {
			if a.ByIndex == nil {
				a.ByIndex = map[uint32]string{}
			}
			a.ByIndex[uint32(n)] = job
		}
	}
	return a, nil
}

// Assign is Jobs as an Assignment by UUID.
func (p ProcCgroups) Assign(ctx context.Context) (Assignment, error) {
	jobs, err := p.Jobs(ctx)
	return Assignment{ByUUID: jobs}, err
}
