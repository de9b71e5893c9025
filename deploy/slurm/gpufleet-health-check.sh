#!/bin/bash
# Slurm HealthCheckProgram for gpufleet: runs `gpufleet health-check` (docs/health.md) and acts on
# its exit code, as slurmd leaves that to the program:
#
#   0 OK       resume the node if this script drained it (reason "gpufleet health-check: …"),
#              unless GPUFLEET_HEALTH_RESUME=0; a node drained by anyone else is left alone
#   1 WARN     log the findings (syslog tag gpufleet-health-check) and, as for OK, resume a node
#              this script drained: a degraded GPU still runs jobs
#   2 CRITICAL drain the node with the first line as the reason (a GPU needs an application
#              restart, a reset, a reboot or service; the driver is gone; a bad setting)
#   other      the check could not run (binary missing, killed): drain, saying so
#
# Install as /usr/local/sbin/gpufleet-health-check (mode 0755) on every GPU node, with in
# slurm.conf (deploy/slurm/slurm.conf.health):
#
#   HealthCheckProgram=/usr/local/sbin/gpufleet-health-check
#   HealthCheckInterval=300
#   HealthCheckNodeState=ANY,CYCLE
#
# slurmd runs it as root with no PATH, kills it after 60 s, and at start-up runs it again and again
# until it exits 0 before registering: so it always exits 0, having drained the node when it must.
# Settings come from /etc/default/gpufleet-health-check (GPUFLEET_HEALTH_DEFAULTS), e.g.
#
#   GPUFLEET_HEALTH_ARGS="--expect-gpus 8"
#   GPUFLEET_BIN=/usr/local/bin/gpufleet       the binary (the agent-only build will do)
#   GPUFLEET_SLURM_NODE=...                    the node's Slurm name, default hostname -s
#   GPUFLEET_HEALTH_RESUME=0                   never resume a node

PATH=/usr/sbin:/usr/bin:/sbin:/bin # slurmd sets no PATH
defaults=${GPUFLEET_HEALTH_DEFAULTS:-/etc/default/gpufleet-health-check}
# shellcheck source=/dev/null
[ -r "$defaults" ] && . "$defaults"
bin=${GPUFLEET_BIN:-/usr/local/bin/gpufleet}
scontrol=${SCONTROL:-scontrol}
node=${GPUFLEET_SLURM_NODE:-$(hostname -s)}
resume=${GPUFLEET_HEALTH_RESUME:-1}
prefix="gpufleet health-check:"

log() {
	echo "gpufleet-health-check: $*" >&2
	command -v logger >/dev/null && logger -t gpufleet-health-check -- "$*"
	return 0
}

# reason is the drain reason: the prefix and the check's first line, without characters a
# reason cannot carry, cut to what scontrol shows in full.
reason() {
	local r="$prefix $1"
	r=${r//[$'\n\r\t"']/ }
	printf '%s' "${r:0:240}"
}

main() {
	local out code first
	# The findings are stdout; the binary's log (stderr) goes to slurmd's log with ours.
	# shellcheck disable=SC2086 # GPUFLEET_HEALTH_ARGS is a list of flags
	out=$("$bin" health-check ${GPUFLEET_HEALTH_ARGS:-})
	code=$?
	first=${out%%$'\n'*}
	case $code in
	0 | 1)
		[ "$code" = 1 ] && log "node $node: WARN: ${out//$'\n'/; }"
		[ "$resume" = 1 ] || return 0
		local show
		show=$("$scontrol" -o show node "$node" 2>/dev/null) || return 0
		# Only a drain this script made: its reason begins with the prefix.
		if [[ $show == *State=*DRAIN* && $show == *"Reason=$prefix"* ]]; then
			log "node $node passes again ($first): resuming it"
			"$scontrol" update nodename="$node" state=resume || log "scontrol resume failed"
		fi
		;;
	2)
		log "node $node: CRITICAL, draining: ${out//$'\n'/; }"
		"$scontrol" update nodename="$node" state=drain reason="$(reason "$first")" || log "scontrol drain failed"
		;;
	*)
		log "node $node: $bin health-check could not run (exit $code): ${out//$'\n'/; }"
		"$scontrol" update nodename="$node" state=drain reason="$(reason "check could not run (exit $code): $first")" || log "scontrol drain failed"
		;;
	esac
	return 0
}

main
exit 0
