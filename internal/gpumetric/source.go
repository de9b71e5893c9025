package gpumetric

import (
	"strconv"
	"strings"
)

// Source is what the agent asks NVML for a metric: exactly one of Call, Fields and GPM is set. The
// agent (agent/nvml) builds its field-value and GPM requests from these rows, and its tests fail
// when a call it makes for a metric is not the Call named here.
type Source struct {
	// Call is the NVML function the agent calls, with the argument that selects the reading where
	// its errors name one ("nvmlDeviceGetClockInfo(SM)"): exactly the Op of the agent's errors.
	Call string
	// Use says what of the call's answer is kept and how it is scaled (".used / 2^20").
	Use string
	// Fields are NVML field values, read in the agent's one nvmlDeviceGetFieldValues call per GPU
	// per tick; the metric is their sum.
	Fields []Field
	// Else are summed instead when Fields cannot all be read (retired pages on GPUs that remap
	// rows instead).
	Else []Field
	// AllLinks: Fields are read with the scope that sums them over every NVLink.
	AllLinks bool
	// GPM is the GPM metric read with nvmlGpmMetricsGet over the interval since the last tick
	// (Hopper and later).
	GPM GPMMetric
}

func call(fn, use string) Source { return Source{Call: fn, Use: use} }
func fields(f ...Field) Source   { return Source{Fields: f} }
func gpm(g GPMMetric) Source     { return Source{GPM: g} }

// String is the source as docs/schema.md shows it.
func (s Source) String() string {
	switch {
	case s.Call != "":
		return s.Call + s.Use
	case s.GPM != 0:
		return s.GPM.String() + " (Hopper and later)"
	}
	out := joinFields(s.Fields)
	if s.AllLinks {
		out += ", all links"
	}
	if len(s.Else) > 0 {
		out += ", else " + joinFields(s.Else)
	}
	return out
}

func joinFields(fs []Field) string {
	names := make([]string, len(fs))
	for i, f := range fs {
		names[i] = f.String()
	}
	return strings.Join(names, " + ")
}

// Field is an NVML field value id (nvml.h NVML_FI_DEV_*).
type Field uint32

// The field values the catalogue reads; agent/nvml's tests hold each to go-nvml's nvml.h constant.
const (
	FieldECCSbeVolTotal           Field = 3
	FieldECCDbeVolTotal           Field = 4
	FieldECCSbeAggTotal           Field = 5
	FieldECCDbeAggTotal           Field = 6
	FieldRetiredSBE               Field = 29
	FieldRetiredDBE               Field = 30
	FieldRetiredPending           Field = 31
	FieldNVLinkCRCFlitErrorTotal  Field = 38
	FieldNVLinkCRCDataErrorTotal  Field = 45
	FieldNVLinkReplayErrorTotal   Field = 52
	FieldNVLinkRecoveryErrorTotal Field = 59
	FieldMemoryTemp               Field = 82
	FieldTotalEnergy              Field = 83
	FieldPCIeReplayCounter        Field = 94
	FieldNVLinkThroughputDataTx   Field = 138
	FieldNVLinkThroughputDataRx   Field = 139
	FieldRemappedCor              Field = 142
	FieldRemappedUnc              Field = 143
)

var fieldNames = map[Field]string{
	FieldECCSbeVolTotal:           "ECC_SBE_VOL_TOTAL",
	FieldECCDbeVolTotal:           "ECC_DBE_VOL_TOTAL",
	FieldECCSbeAggTotal:           "ECC_SBE_AGG_TOTAL",
	FieldECCDbeAggTotal:           "ECC_DBE_AGG_TOTAL",
	FieldRetiredSBE:               "RETIRED_SBE",
	FieldRetiredDBE:               "RETIRED_DBE",
	FieldRetiredPending:           "RETIRED_PENDING",
	FieldNVLinkCRCFlitErrorTotal:  "NVLINK_CRC_FLIT_ERROR_COUNT_TOTAL",
	FieldNVLinkCRCDataErrorTotal:  "NVLINK_CRC_DATA_ERROR_COUNT_TOTAL",
	FieldNVLinkReplayErrorTotal:   "NVLINK_REPLAY_ERROR_COUNT_TOTAL",
	FieldNVLinkRecoveryErrorTotal: "NVLINK_RECOVERY_ERROR_COUNT_TOTAL",
	FieldMemoryTemp:               "MEMORY_TEMP",
	FieldTotalEnergy:              "TOTAL_ENERGY_CONSUMPTION",
	FieldPCIeReplayCounter:        "PCIE_REPLAY_COUNTER",
	FieldNVLinkThroughputDataTx:   "NVLINK_THROUGHPUT_DATA_TX",
	FieldNVLinkThroughputDataRx:   "NVLINK_THROUGHPUT_DATA_RX",
	FieldRemappedCor:              "REMAPPED_COR",
	FieldRemappedUnc:              "REMAPPED_UNC",
}

// String is the nvml.h name: NVML_FI_DEV_TOTAL_ENERGY_CONSUMPTION.
func (f Field) String() string {
	if n, ok := fieldNames[f]; ok {
		return "NVML_FI_DEV_" + n
	}
	return "NVML_FI_" + strconv.Itoa(int(f))
}

// GPMMetric is an NVML GPM metric id (nvml.h NVML_GPM_METRIC_*).
type GPMMetric uint32

// The GPM metrics the catalogue reads.
const (
	GPMSMUtil        GPMMetric = 2
	GPMSMOccupancy   GPMMetric = 3
	GPMAnyTensorUtil GPMMetric = 5
	GPMDRAMBWUtil    GPMMetric = 10
)

var gpmNames = map[GPMMetric]string{
	GPMSMUtil:        "SM_UTIL",
	GPMSMOccupancy:   "SM_OCCUPANCY",
	GPMAnyTensorUtil: "ANY_TENSOR_UTIL",
	GPMDRAMBWUtil:    "DRAM_BW_UTIL",
}

// String is the nvml.h name: NVML_GPM_METRIC_SM_UTIL.
func (g GPMMetric) String() string {
	if n, ok := gpmNames[g]; ok {
		return "NVML_GPM_METRIC_" + n
	}
	return "NVML_GPM_METRIC_" + strconv.Itoa(int(g))
}
