#!/bin/bash
# Slurm Prolog for gpufleet's job attribution: writes, for each GPU of the job on this node, the
# job id into <dir>/<GPU index>, the files `gpufleet agent --job-mapping-dir <dir>` reads
# (dcgm-exporter's --hpc-job-mapping-dir convention: one line per job, as several jobs may share a
# GPU). deploy/slurm/epilog.sh removes them. Install on every GPU node, e.g. as
# /etc/slurm/prolog.d/gpufleet.sh, with in slurm.conf:
#
#   Prolog=/etc/slurm/prolog.d/*
#   Epilog=/etc/slurm/epilog.d/*
#   PrologFlags=Alloc     (run at allocation, so a GPU counts as the job's from its start)
#
# slurmd runs it as root with SLURM_JOB_ID and the job's GPUs in SLURM_JOB_GPUS (or, on Slurm
# versions without it, CUDA_VISIBLE_DEVICES): Slurm's GPU indexes, which are NVML's when gres.conf
# has AutoDetect=nvml (or lists /dev/nvidia<N> in NVML's order). The directory is
# GPUFLEET_JOB_MAPPING_DIR, the agent's variable, default /run/gpufleet-jobs (tmpfs: a reboot ends
# every job, and their files with it).
#
# A failing Prolog drains the node and requeues the job, so this script never fails: a problem is
# logged to stderr (slurmd's log) and the job runs unattributed.

PATH=/usr/sbin:/usr/bin:/sbin:/bin # slurmd sets no PATH
dir=${GPUFLEET_JOB_MAPPING_DIR:-/run/gpufleet-jobs}
job=${SLURM_JOB_ID:-}
gpus=${SLURM_JOB_GPUS:-${CUDA_VISIBLE_DEVICES:-}}

warn() { echo "gpufleet prolog: job ${job:-?}: $*" >&2; }

# indexes prints one GPU index per line from a list like 0,1,4-7; an entry that is not an index (a
# GPU UUID in CUDA_VISIBLE_DEVICES, NoDevFiles) is skipped with a warning.
indexes() {
	local e
	for e in ${1//,/ }; do
		if [[ $e =~ ^[0-9]+$ ]]; then
			echo "$((10#$e))"
		elif [[ $e =~ ^([0-9]+)-([0-9]+)$ ]]; then
			seq "$((10#${BASH_REMATCH[1]}))" "$((10#${BASH_REMATCH[2]}))"
		else
			warn "GPU \"$e\" is not an index: not attributed"
		fi
	done
}

main() {
	if [[ ! $job =~ ^[0-9]+$ ]]; then
		warn "SLURM_JOB_ID \"$job\" is not a job id"
		return
	fi
	[ -n "$gpus" ] || return 0 # a job without GPUs on this node
	umask 022                  # the agent, another user, reads the files
	mkdir -p "$dir" || return
	# One prolog or epilog at a time per directory: each rewrites a whole file.
	exec 9>"$dir/.lock" || return
	flock 9 || return
	local g f tmp
	for g in $(indexes "$gpus"); do
		f=$dir/$g
		# Written beside and renamed over, so the agent reads the old file or the new, never half.
		tmp=$(mktemp "$dir/.tmp.XXXXXX") || return
		{
			[ -f "$f" ] && grep -vxF -- "$job" "$f"
			echo "$job"
		} >"$tmp"
		if ! { chmod 0644 "$tmp" && mv -f "$tmp" "$f"; }; then
			warn "cannot write $f"
			rm -f "$tmp"
		fi
	done
}

main || warn "mapping files in $dir not written"
exit 0
