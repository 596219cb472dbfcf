#!/usr/bin/env bash
# Regenerates docs/conformance.md: the suite against every stack named (default: every stack
# of the registry whose agent this checkout builds), one Markdown table. Needs the privileges
# `halfclose run` needs (root, or an unprivileged user namespace).
#   scripts/regen-conformance.sh [linux,smoltcp,…] [--fast]
set -euo pipefail
cd "$(dirname "$0")/.."
stacks="${1:-linux,smoltcp}"
shift || true
cargo build --locked --release --workspace
out=$(mktemp)
trap 'rm -f "$out"' EXIT
./target/release/halfclose matrix --stacks "$stacks" "$@" >"$out"
mv "$out" docs/conformance.md
trap - EXIT
echo "docs/conformance.md: $(grep -c '^| `' docs/conformance.md) scenarios × ${stacks//,/ }"
