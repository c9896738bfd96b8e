#!/usr/bin/env bash
# A whole blue/green deploy by the toolkit beside the seed's shell steps
# (docs/migration.md), side by side in one run, on loopback: one throwaway
# sshd (app host and nginx host are both 127.0.0.1 through it), one nginx with
# its own prefix, the test rig's stand-in jar started with
# -Dapp.startDelay=START_MS. Deploys alternate, seed then toolkit, each to the
# port that is not active, so each one stops the previous backup, ships,
# starts, health-checks and switches, as in production. Prints a Markdown
# table, the means, the ratio and the toolkit's overhead above START_MS.
#
#   benches/deploy-vs-seed.sh [REPETITIONS] [START_MS]       (defaults: 3 1500)
#
# The SSH logins are as the user running the script. bash sources ~/.bashrc
# even for `ssh host CMD` (it sees SSH_CLIENT), and a heavy one (root's runs
# `pyenv init` on our machines: 0.28 s) is paid once per SSH session, which
# measures the login shell, not the deploy. So the throwaway sshd sets SHLVL=1
# (`SetEnv`), which makes bash skip it, as for a deploy user with a plain
# shell. BG_BENCH_BASHRC=1 keeps it, to see what a heavy one costs each side.
#
# Needs /usr/sbin/sshd, ssh, scp, ssh-keygen, /usr/sbin/nginx, javac, jar,
# java, curl, fuser and bc (Debian: openssh-server openssh-client nginx-light
# default-jdk-headless curl psmisc bc). Builds the binaries in release mode
# first. Everything it starts listens on 127.0.0.1 only and is stopped on
# exit. A slow link between agent and hosts: benches/deploy-wan.sh.
set -euo pipefail

reps=${1:-3}
start_ms=${2:-1500}
root=$(cd "$(dirname "$0")/.." && pwd)

# The setup and both deploy scripts: benches/deploy-setup.sh.
. "$root/benches/deploy-setup.sh"
deploy_setup
write_seed seed "$port" "$blue" "$green"
write_toolkit toolkit "$port" "$blue" "$green"

app_total=0
for _ in $(seq "$reps"); do a=$(app_start); app_total=$(echo "$app_total + $a" | bc -l); done
app_s=$(echo "$app_total / $reps" | bc -l)
start_s=$(echo "$start_ms / 1000" | bc -l)

printf 'app start alone (java to first HTTP answer, -Dapp.startDelay=%s): %.2f s\n\n' "$start_ms" "$app_s"
echo "| run | seed's shell s | toolkit s | seed / toolkit | toolkit minus app start s |"
echo "|---|---|---|---|---|"
seed_total=0 tk_total=0 n=0
for rep in $(seq "$reps"); do
  n=$((n + 1)); s=$(deploy seed "$n")
  n=$((n + 1)); t=$(deploy toolkit "$n")
  printf '| %s | %.2f | %.2f | %.1f | %.2f |\n' "$rep" "$s" "$t" "$(echo "$s / $t" | bc -l)" \
    "$(echo "$t - $app_s" | bc -l)"
  seed_total=$(echo "$seed_total + $s" | bc -l)
  tk_total=$(echo "$tk_total + $t" | bc -l)
done
printf '\nmean: seed %.2f s, toolkit %.2f s, seed/toolkit = %.1f\n' \
  "$(echo "$seed_total / $reps" | bc -l)" "$(echo "$tk_total / $reps" | bc -l)" \
  "$(echo "$seed_total / $tk_total" | bc -l)"
printf 'toolkit overhead: %.2f s above the app'"'"'s measured start (%.2f s), %.2f s above the %s ms start delay\n' \
  "$(echo "$tk_total / $reps - $app_s" | bc -l)" "$app_s" \
  "$(echo "$tk_total / $reps - $start_s" | bc -l)" "$start_ms"
printf 'seed overhead: %.2f s above the app'"'"'s measured start (%s deploys each, jar %s bytes)\n' \
  "$(echo "$seed_total / $reps - $app_s" | bc -l)" "$reps" "$(stat -c %s "$work/app.jar")"
printf '\nthe last toolkit deploy, step by step (s):'
awk '/^step /{printf " %s %.2f", $2, $3}' "$work/toolkit-$n.out"; echo
