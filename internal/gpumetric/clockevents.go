package gpumetric

// ClockEventReason is one bit of throttle_reasons: a reason NVML reports for clocks below their
// maximum (the nvmlClocksEventReason* / nvmlClocksThrottleReason* constants of nvml.h).
type ClockEventReason struct {
	Name string
	Bit  uint64
	Help string
}

// ClockEventReasons are the bits of throttle_reasons, in bit order. Names are what queries and
// dashboards use (query agg share, reason=sw_thermal).
var ClockEventReasons = []ClockEventReason{
	{"gpu_idle", 0x1, "nothing is running: clocks drop by design"},
	{"applications_clocks_setting", 0x2, "clocks held at application-set values"},
	{"sw_power_cap", 0x4, "the driver caps power at the enforced limit"},
	{"hw_slowdown", 0x8, "hardware slowdown (thermal, power brake or an external signal)"},
	{"sync_boost", 0x10, "held to the slowest GPU of a sync-boost group"},
	{"sw_thermal", 0x20, "the driver slows the GPU to keep it under its thermal limit"},
	{"hw_thermal", 0x40, "the hardware slows the GPU: it is too hot"},
	{"hw_power_brake", 0x80, "an external power-brake signal (the system's power supply)"},
	{"display_clock_setting", 0x100, "limited by the display clock"},
	{"board_limit", 0x200, "the board's limit policy"},
	{"reliability", 0x400, "the reliability policy"},
}

// LookupClockEventReason returns the reason named name; ok is false for a name not listed.
func LookupClockEventReason(name string) (ClockEventReason, bool) {
	for _, r := range ClockEventReasons {
		if r.Name == name {
			return r, true
		}
	}
	return ClockEventReason{}, false
}
