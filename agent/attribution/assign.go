package attribution

import "context"

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

// Assign is Jobs as an Assignment by UUID.
func (p *PodResources) Assign(ctx context.Context) (Assignment, error) {
	jobs, err := p.Jobs(ctx)
	return Assignment{ByUUID: jobs}, err
}

// Assign is Jobs as an Assignment by UUID.
func (p ProcCgroups) Assign(ctx context.Context) (Assignment, error) {
	jobs, err := p.Jobs(ctx)
	return Assignment{ByUUID: jobs}, err
}
