#!/usr/bin/env bash
# Installs the Debian packages some tests need, when missing:
#   gcc-aarch64-linux-gnu  the agent image's cgo build for arm64 (deploy/image_test.go), with
#   libc6-dev-arm64-cross  its C library headers (only recommended by the compiler's package, and
#                          --no-install-recommends leaves recommendations out)
#   chromium               the fleet-health page's browser test (query/fleetpage)
# Needs root and apt (the CI machine has both); prints what it installs on stderr.
#   deploy/dev/test-packages.sh install
set -euo pipefail

want=()
command -v aarch64-linux-gnu-gcc >/dev/null || want+=(gcc-aarch64-linux-gnu)
[ -e /usr/aarch64-linux-gnu/include/stdio.h ] || want+=(libc6-dev-arm64-cross)
command -v chromium >/dev/null || want+=(chromium)

case "${1:-}" in
install)
	[ ${#want[@]} -eq 0 ] && exit 0
	echo "test-packages.sh: installing ${want[*]}" >&2
	if [ "$(id -u)" != 0 ]; then
		echo "test-packages.sh: need root to apt-get install ${want[*]}" >&2
		exit 1
	fi
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq >/dev/null
	apt-get install -y -qq --no-install-recommends "${want[@]}" >/dev/null
	;;
*)
	echo "usage: $0 install" >&2
	exit 2
	;;
esac
