#!/usr/bin/env bash
# Installs libchdb.so (the ClickHouse engine as a library) from the npm package
# @chdb/lib-linux-x64-gnu, pinned below, and prints the library's path.
#
#   deploy/dev/chdb.sh install     fetch once into $GPUFLEET_CACHE (default <repo>/.cache), print the path
#
# Use the path as GPUFLEET_LIBCHDB=<path> (or --libchdb) for gpufleet's embedded mode.
set -euo pipefail

version=26.5.3
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
cache=${GPUFLEET_CACHE:-$repo/.cache}
dir=$cache/chdb-$version
lib=$dir/libchdb.so

die() { echo "chdb.sh: $*" >&2; exit 1; }

install() {
  if [ ! -f "$lib" ]; then
    command -v npm >/dev/null || die "npm not found: install Node.js 20+ (Debian: apt-get install nodejs npm)"
    echo "chdb.sh: fetching @chdb/lib-linux-x64-gnu@$version (about 170 MB) into $dir" >&2
    local tmp; tmp=$(mktemp -d "$cache/chdb-tmp.XXXXXX")
    (cd "$tmp" && npm pack --silent "@chdb/lib-linux-x64-gnu@$version" >/dev/null) \
      || { rm -rf "$tmp"; die "npm could not fetch @chdb/lib-linux-x64-gnu@$version (is the npm registry reachable?)"; }
    tar -xzf "$tmp"/*.tgz -C "$tmp" package/libchdb.so || { rm -rf "$tmp"; die "the package has no libchdb.so"; }
    mkdir -p "$dir"
    mv "$tmp/package/libchdb.so" "$lib.part" && mv "$lib.part" "$lib"
    rm -rf "$tmp"
  fi
  echo "$lib"
}

mkdir -p "$cache"
case "${1:-}" in
  install) install ;;
  *) die "usage: chdb.sh install" ;;
esac
