#!/usr/bin/env bash
# Regenerates the ladder diagrams in docs/ladders/: each is `halfclose show --svg` of a
# capture the suite itself just made (IPv4, on the local kernel), and the text ladder beside
# it. Needs the privileges `halfclose run` needs (root, or an unprivileged user namespace).
#   scripts/regen-ladders.sh
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --locked --release
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
hc=./target/release/halfclose
mkdir -p docs/ladders
$hc run suites/close/active-close.yaml suites/close/simultaneous-close.yaml \
  --filter ipv4:: --format terse --pcap-dir "$tmp" >/dev/null
# A fixture that must fail (it takes the first FIN retransmission for the second): exit 1.
$hc run fixtures/fail/wrong-retransmission.yaml --filter ipv4:: --format terse \
  --pcap-dir "$tmp" >/dev/null 2>&1 && { echo "the failing fixture passed" >&2; exit 1; }
for pair in close/active-close close/simultaneous-close fail/wrong-retransmission; do
  name=${pair#*/}
  $hc show "$tmp/ipv4/$pair.pcapng" --svg "docs/ladders/$name.svg" >"docs/ladders/$name.txt"
done
echo "docs/ladders: $(ls docs/ladders | tr '\n' ' ')"
