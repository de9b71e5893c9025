#!/bin/bash
# Slurm Epilog for gpufleet's job attribution: removes the job's line from every mapping file
# deploy/slurm/prolog.sh wrote (a file left with no job is removed: its GPU runs none). It looks at
# every file rather than the job's GPUs, as the Epilog of some Slurm versions is not told them.
# Install as /etc/slurm/epilog.d/gpufleet.sh (see the head of prolog.sh). The directory is
# GPUFLEET_JOB_MAPPING_DIR, default /run/gpufleet-jobs.
#
# A failing Epilog drains the node, so this script never fails: a problem is logged to stderr.

PATH=/usr/sbin:/usr/bin:/sbin:/bin # slurmd sets no PATH
dir=${GPUFLEET_JOB_MAPPING_DIR:-/run/gpufleet-jobs}
job=${SLURM_JOB_ID:-}

warn() { echo "gpufleet epilog: job ${job:-?}: $*" >&2; }

main() {
	if [[ ! $job =~ ^[0-9]+$ ]]; then
		warn "SLURM_JOB_ID \"$job\" is not a job id"
		return
	fi
	[ -d "$dir" ] || return 0 # no job with GPUs ran here since boot
	umask 022
	exec 9>"$dir/.lock" || return
	flock 9 || return
	local f tmp
	for f in "$dir"/*; do
		[[ ${f##*/} =~ ^[0-9]+$ && -f $f ]] || continue
		grep -qxF -- "$job" "$f" || continue
		tmp=$(mktemp "$dir/.tmp.XXXXXX") || return
		grep -vxF -- "$job" "$f" >"$tmp"
		if [ -s "$tmp" ]; then
			if ! { chmod 0644 "$tmp" && mv -f "$tmp" "$f"; }; then
				warn "cannot rewrite $f"
			fi
		else
			rm -f "$f" || warn "cannot remove $f"
		fi
		rm -f "$tmp"
	done
}

main || warn "mapping files in $dir not cleaned"
exit 0
