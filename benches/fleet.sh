#!/usr/bin/env bash
# A fleet of three app hosts against one: the whole jenkins/Jenkinsfile.fleet
# deploy (through the test pipeline shim) to one host and to three, in turn,
# in one run, and its fan-out stages (Stop Port, Deploy, Health Check, run on
# every host at once). The hosts are the test rig's: network namespaces made
# by the benchmark, each with its own address (10.200.x.y, on a veth pair
# that only this machine sees), sshd and deploy directory; nginx and the
# agent are on loopback.
#
#   benches/fleet.sh [ROUNDS] [RTT_MS]        (defaults: 3 0)
#
#   benches/fleet.sh 5           five rounds, no link delay
#   benches/fleet.sh 3 50        every SSH connection over a 50 ms link
#
# RTT_MS > 0 puts the rig's delay proxy (tests/rig/delay.rs) inside each
# host's namespace, in front of its sshd, so that every SSH round trip of
# the deploy costs RTT_MS. Needs root (network namespaces) and what the
# tests need (scripts/install-test-deps.sh). Prints one line per run and
# the medians ("BENCH ..."); everything it starts is stopped at the end.
set -euo pipefail

rounds=${1:-3}
rtt_ms=${2:-0}
for n in "$rounds" "$rtt_ms"; do
  [[ $n =~ ^[0-9]+$ ]] || { echo "usage: $0 [ROUNDS] [RTT_MS] (whole numbers)" >&2; exit 2; }
done
[ "$rounds" -ge 1 ] || { echo "ROUNDS must be at least 1" >&2; exit 2; }
cd "$(dirname "$0")/.."

BG_BENCH_ROUNDS=$rounds BG_BENCH_RTT_MS=$rtt_ms \
  cargo test --release --test fleet -- --ignored --exact bench_fleet_of_three_vs_one_host --nocapture 2>&1 |
  grep '^BENCH'
