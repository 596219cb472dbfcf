#!/usr/bin/env bash
# Builds the lwIP agent (agents/lwip: Rust over Debian's liblwip, its C glue compiled by
# agents/lwip/build.rs) beside the halfclose binary, where `--stack lwip` looks for it
# (src/stack.rs, Launch::AgentBinary). Checks first that what it needs is installed, and
# says what is missing: liblwip-dev (pkg-config lwip) and a C compiler.
#   scripts/build-lwip-agent.sh [--release]       exit 0 built, 2 something is missing
set -euo pipefail
cd "$(dirname "$0")/.."
missing=()
command -v pkg-config >/dev/null || missing+=("pkg-config")
if command -v pkg-config >/dev/null && ! pkg-config --exists 'lwip >= 2.1'; then
  missing+=("liblwip-dev (lwIP 2.1 or later)")
fi
command -v "${CC:-cc}" >/dev/null || missing+=("a C compiler (${CC:-cc})")
if [ ${#missing[@]} -gt 0 ]; then
  echo "build-lwip-agent: missing: ${missing[*]}; on Debian: apt-get install -y liblwip-dev pkg-config gcc" >&2
  exit 2
fi
cargo build --locked -p halfclose-lwip-agent "$@"
profile=debug
for a in "$@"; do [ "$a" = "--release" ] && profile=release; done
agent="target/$profile/halfclose-lwip-agent"
# An agent built without lwIP says so and exits 2 instead of saying hello.
if ! "$agent" </dev/null | grep -q '"stack":"lwip '; then
  echo "build-lwip-agent: $agent was built without lwIP:" >&2
  "$agent" </dev/null || true
  exit 2
fi
echo "build-lwip-agent: $agent ($(pkg-config --modversion lwip))"
