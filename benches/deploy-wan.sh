#!/usr/bin/env bash
# A whole blue/green deploy over a slow link: the seed's shell steps and the
# toolkit side by side in one run, as benches/deploy-vs-seed.sh does them
# (same setup, benches/deploy-setup.sh), with the agent RTT_MS away from the
# host. A deploy agent is often 50 ms from its hosts, and there every round
# trip and every login shell counts.
#
#   benches/deploy-wan.sh [RUNS] [APP_START_MS] [RTT_MS] [SHELL_MS]
#                                             (defaults: 3 1500 50 0)
#
#   benches/deploy-wan.sh 3 1500 50       a 50 ms link
#   benches/deploy-wan.sh 3 1500 0 90     loopback, a login shell of 90 ms
#
# The link: no qdisc (tc netem) is needed. The test rig's `delay-proxy`
# (tests/rig/delay.rs) listens in front of sshd and in front of each app
# port, and delays each direction by RTT_MS / 2; a new connection costs what
# a TCP handshake costs on such a link. Everything the agent does with the
# host goes through it: ssh and scp, and the HTTP health checks (the seed's
# curl, bg-healthcheck). What runs on the host (nginx, the app) does not.
# RTT_MS=0: no link, all on loopback.
#
# The login shell: with SHELL_MS > 0, every SSH session's bash reads a
# .bashrc that sleeps SHELL_MS before its "not interactive: return" guard,
# as a heavy one does (root's runs `pyenv init` on our machines). It is in a
# HOME of the throwaway sshd's own (benches/deploy-setup.sh): no real
# ~/.bashrc is touched. With SHELL_MS=0, bash skips ~/.bashrc, as in
# deploy-vs-seed.sh.
#
# Each run deploys once per variant, in turn, each to the port that is not
# active:
#   seed      the seed's stage shell (ssh, scp, curl through the link)
#   ssh2      the toolkit's six calls, built-in SSH client (the default)
#   openssh   the same with BG_SSH_CLIENT=openssh (the system's ssh, one
#             shared connection; BG_SSH_PERSIST=5s keeps it from one step to
#             the next but not into the next deploy, a seed deploy later)
# Per variant it prints the mean wall time, the app's own start (measured
# alone, no link), the overhead above it, seed / variant, and the SSH logins
# and session channels sshd saw per deploy (sshd at LogLevel DEBUG1).
#
# Needs what deploy-vs-seed.sh needs. Builds the binaries (and the rig's
# delay-proxy) in release mode first. Everything listens on 127.0.0.1 only;
# everything started is stopped, and the temp dir removed, on exit.
set -euo pipefail

reps=${1:-3}
start_ms=${2:-1500}
rtt_ms=${3:-50}
shell_ms=${4:-0}
root=$(cd "$(dirname "$0")/.." && pwd)
for n in "$reps" "$start_ms" "$rtt_ms" "$shell_ms"; do
  [[ $n =~ ^[0-9]+$ ]] || { echo "usage: $0 [RUNS] [APP_START_MS] [RTT_MS] [SHELL_MS] (whole numbers)" >&2; exit 2; }
done
[ "$reps" -ge 1 ] || { echo "RUNS must be at least 1" >&2; exit 2; }

. "$root/benches/deploy-setup.sh"
sshd_extra="LogLevel DEBUG1"   # a line per session channel, to count them
deploy_setup

# --- the slow link ------------------------------------------------------------
# Not `$(proxy ...)`: a subshell would be its parent, and it stops when its
# parent exits.
proxy() { # TARGET_PORT: starts a delay-proxy in front of it, sets proxy_port
  local out
  out=$(mktemp "$work/proxy.XXXXXX")
  "$bin/delay-proxy" "$rtt_ms" "$1" > "$out" &
  extra_pids+=("$!")
  for _ in $(seq 100); do
    [ -s "$out" ] && { proxy_port=$(head -n 1 "$out"); return; }
    sleep 0.05
  done
  echo "delay-proxy for port $1 did not start" >&2
  exit 1
}
if [ "$rtt_ms" -gt 0 ]; then
  proxy "$port"; ssh_port=$proxy_port
  proxy "$blue"; http_blue=$proxy_port
  proxy "$green"; http_green=$proxy_port
else
  ssh_port=$port http_blue=$blue http_green=$green
fi

variants=(seed ssh2 openssh)
write_seed seed "$ssh_port" "$http_blue" "$http_green"
write_toolkit ssh2 "$ssh_port" "$http_blue" "$http_green"
write_toolkit openssh "$ssh_port" "$http_blue" "$http_green" BG_SSH_CLIENT=openssh BG_SSH_PERSIST=5s

app_total=0
for _ in $(seq "$reps"); do a=$(app_start); app_total=$(echo "$app_total + $a" | bc -l); done
app_s=$(echo "$app_total / $reps" | bc -l)

if [ "$rtt_ms" -gt 0 ]; then link="a ${rtt_ms} ms round trip (delay-proxy)"; else link="loopback"; fi
if [ "$shell_ms" -gt 0 ]; then shell="a login shell of $shell_ms ms"; else shell="no ~/.bashrc"; fi
printf 'link: %s; %s; app start alone (java to first HTTP answer, -Dapp.startDelay=%s): %.2f s\n\n' \
  "$link" "$shell" "$start_ms" "$app_s"

echo "| run | seed s | toolkit ssh2 s | toolkit openssh s |"
echo "|---|---|---|---|"
declare -A total conns sessions last
for v in "${variants[@]}"; do total[$v]=0 conns[$v]=0 sessions[$v]=0; done
n=0
for rep in $(seq "$reps"); do
  row="| $rep |"
  for v in "${variants[@]}"; do
    n=$((n + 1))
    s=$(deploy "$v" "$n")
    read -r c k < "$work/$v-$n.ssh"
    total[$v]=$(echo "${total[$v]} + $s" | bc -l)
    conns[$v]=$(( ${conns[$v]} + c )) sessions[$v]=$(( ${sessions[$v]} + k ))
    last[$v]=$n
    row+=$(printf ' %.2f |' "$s")
  done
  echo "$row"
done

mean() { echo "${total[$1]} / $reps" | bc -l; }
echo
echo "| variant | mean s | app start s | overhead s | seed / variant | SSH logins | SSH sessions |"
echo "|---|---|---|---|---|---|---|"
for v in "${variants[@]}"; do
  case $v in
    seed) label="seed's shell" ;;
    *) label="toolkit, $v" ;;
  esac
  printf '| %s | %.2f | %.2f | %.2f | %.1f | %s | %s |\n' "$label" "$(mean "$v")" "$app_s" \
    "$(echo "$(mean "$v") - $app_s" | bc -l)" "$(echo "$(mean seed) / $(mean "$v")" | bc -l)" \
    "$(echo "${conns[$v]} / $reps" | bc -l | xargs printf '%.0f')" \
    "$(echo "${sessions[$v]} / $reps" | bc -l | xargs printf '%.0f')"
done

echo
goal() { # TEXT MET(0|1)
  if [ "$2" = 1 ]; then echo "$1: met"; else echo "$1: NOT met"; fi
}
ratio=$(echo "$(mean seed) / $(mean openssh)" | bc -l)
overhead=$(echo "$(mean openssh) - $app_s" | bc -l)
if [ "$rtt_ms" -gt 0 ]; then
  goal "$(printf 'toolkit over openssh at least 2x the seed on this link: %.1fx' "$ratio")" \
    "$(echo "$ratio >= 2" | bc -l)"
  goal "$(printf 'its overhead above the app'"'"'s start under 1.5 s: %.2f s' "$overhead")" \
    "$(echo "$overhead < 1.5" | bc -l)"
elif [ "$shell_ms" -gt 0 ]; then
  goal "$(printf 'toolkit over openssh at least 4x the seed with this login shell: %.1fx' "$ratio")" \
    "$(echo "$ratio >= 4" | bc -l)"
fi
for v in ssh2 openssh; do
  printf 'the last toolkit deploy over %s, step by step (s):' "$v"
  awk '/^step /{printf " %s %.2f", $2, $3}' "$work/$v-${last[$v]}.out"; echo
done
