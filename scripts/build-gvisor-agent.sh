#!/usr/bin/env bash
# Builds the gVisor netstack agent (agents/gvisor-netstack/go) into OUT, offline, from the
# Debian packages' sources: golang-go and golang-gvisor-gvisor-dev (gVisor in GOPATH layout
# under /usr/share/gocode). No module download: GOPATH mode.
#
#   scripts/build-gvisor-agent.sh [OUT]      (default: target/gvisor/halfclose-gvisor-agent-go)
#
# cargo runs it from agents/gvisor-netstack/build.rs (so `cargo build --workspace` builds the
# agent), CI through cargo. Exit status 3: Go or the gVisor sources are not installed (the
# message says which); anything else non-zero: the build failed.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-$root/target/gvisor/halfclose-gvisor-agent-go}
gocode=${HALFCLOSE_GOCODE:-/usr/share/gocode}
install_hint="apt-get install -y golang-go golang-gvisor-gvisor-dev"

if ! command -v go >/dev/null; then
  echo "no Go toolchain (go is not on PATH): $install_hint" >&2
  exit 3
fi
if [ ! -d "$gocode/src/gvisor.dev/gvisor/pkg/tcpip/stack" ]; then
  echo "no gVisor sources in $gocode/src/gvisor.dev/gvisor: $install_hint" >&2
  exit 3
fi
mkdir -p "$(dirname "$out")"
# GOPATH's first entry is where `go` would put anything it fetched; nothing is fetched, but it
# must be writable, so it lives beside the output. The build cache too, unless GOCACHE is set.
work="$(cd "$(dirname "$out")" && pwd)/go-work"
mkdir -p "$work"
export GO111MODULE=off GOPATH="$work:$gocode" GOFLAGS= CGO_ENABLED=0
export GOCACHE=${GOCACHE:-$work/cache}
cd "$root/agents/gvisor-netstack/go"
go build -trimpath -o "$out" .
