#!/usr/bin/env bash
# Checks a built plugin directory the way Grafana will load it: an AMD module.js that takes React and
# the @grafana packages from Grafana, a plugin.json with its version filled in and its executable
# named, and a backend binary for each platform Grafana servers run on.
#   deploy/dev/check-plugin-dist.sh plugin/dist
set -euo pipefail
dist=${1:?usage: check-plugin-dist.sh DIST}
fail() { echo "check-plugin-dist: $*" >&2; exit 1; }
[ -s "$dist/module.js" ] || fail "$dist/module.js is missing"
head -c 200 "$dist/module.js" | grep -q '^define(\[' || fail "module.js is not an AMD module"
for ext in '"react"' '"@grafana/ui"' '"@grafana/data"' '"@grafana/runtime"'; do
  head -c 400 "$dist/module.js" | grep -q "$ext" || fail "module.js does not take $ext from Grafana"
done
! grep -q '__SECRET_INTERNALS_DO_NOT_USE_OR_YOU_WILL_BE_FIRED' "$dist/module.js" || fail "module.js bundles React"
[ -s "$dist/plugin.json" ] || fail "$dist/plugin.json is missing"
! grep -q '%VERSION%\|%TODAY%' "$dist/plugin.json" || fail "plugin.json still has %VERSION% or %TODAY%"
exe=$(sed -n 's/.*"executable": *"\([^"]*\)".*/\1/p' "$dist/plugin.json")
[ -n "$exe" ] || fail "plugin.json names no executable"
for platform in linux_amd64 linux_arm64; do
  [ -x "$dist/${exe}_${platform}" ] || fail "backend binary ${exe}_${platform} is missing"
done
[ -s "$dist/img/logo.svg" ] || fail "img/logo.svg is missing"
echo "check-plugin-dist: $dist has module.js ($(wc -c <"$dist/module.js") bytes), plugin.json ($(sed -n 's/.*"version": *"\([^"]*\)".*/\1/p' "$dist/plugin.json" | head -1)) and ${exe}_{linux_amd64,linux_arm64}"
