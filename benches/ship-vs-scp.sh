#!/usr/bin/env bash
# bg-ship vs OpenSSH scp, side by side in one run, over a throwaway sshd on
# loopback. Prints a Markdown table (wall time, max RSS) and the ratio, then
# bg-ship's max RSS for a 1 GiB file. A third column, `ssh host 'cat > FILE'`,
# is the same transport shape as bg-ship's (an exec channel into cat) without
# the lock, the checksum and the rename.
#
#   benches/ship-vs-scp.sh [SIZE_MIB] [REPETITIONS]      (defaults: 200 3)
#
# Every command over SSH starts the login user's shell, and bash reads
# ~/.bashrc even for `ssh host CMD`; a heavy one (root's runs `pyenv init` on
# our machines, 0.1 to 0.28 s) is paid once per command: once by scp, once
# per step by bg-ship. As in deploy-vs-seed.sh, the throwaway sshd sets
# SHLVL=1 so that bash skips it, as for a deploy user with a plain shell;
# BG_BENCH_BASHRC=1 keeps it, to see that cost.
#
# Needs /usr/sbin/sshd, scp, ssh-keygen and GNU time (/usr/bin/time; Debian:
# apt-get install time). Builds bg-ship in release mode first.
set -euo pipefail

size_mib=${1:-200}
reps=${2:-3}
root=$(cd "$(dirname "$0")/.." && pwd)

cargo build --release --quiet -p bg-ship --manifest-path "$root/Cargo.toml"
bg_ship=$root/target/release/bg-ship
[ -x /usr/bin/time ] || { echo "needs GNU time in /usr/bin/time (apt-get install time)" >&2; exit 2; }

work=$(mktemp -d /tmp/bg-bench.XXXXXX)
sshd_pid=
cleanup() {
  [ -n "$sshd_pid" ] && kill "$sshd_pid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

# A throwaway sshd on loopback (benches/sshd.sh).
. "$root/benches/sshd.sh"
start_sshd "$work"

# Incompressible data, as a jar is.
head -c "$((size_mib * 1024 * 1024))" /dev/urandom > "$work/app.jar"

measure() { # ship|scp|ssh_cat DEST FILE -> "seconds max_rss_kib"
  local cmd
  if [ "$1" = ship ]; then
    cmd=("$bg_ship" --artifact "$3" --deploy-path "$2" --port 8001 --no-start -q
      --host "$user@127.0.0.1:$port" --identity "$work/client_ed25519"
      --known-hosts "$work/known_hosts" --lock-dir "$work")
  elif [ "$1" = ssh_cat ]; then
    cmd=(ssh -q -i "$work/client_ed25519" -o BatchMode=yes -o IdentitiesOnly=yes
      -o UserKnownHostsFile="$work/known_hosts" -o StrictHostKeyChecking=yes
      -p "$port" "$user@127.0.0.1" "cat > '$2/$(basename "$3")'")
  else
    cmd=(scp -q -i "$work/client_ed25519" -o BatchMode=yes -o IdentitiesOnly=yes
      -o UserKnownHostsFile="$work/known_hosts" -o StrictHostKeyChecking=yes
      -P "$port" "$3" "$user@127.0.0.1:$2/")
  fi
  rm -rf "$2"; mkdir -p "$2"
  /usr/bin/time -f "%e %M" -o "$work/time" "${cmd[@]}" <"$3" >/dev/null
  cmp -s "$3" "$2/$(basename "$3")" || { echo "$1: the copy differs" >&2; exit 1; }
  cat "$work/time"
}

echo "| run | bg-ship s | bg-ship max RSS MiB | scp s | scp max RSS MiB | ssh 'cat > FILE' s |"
echo "|---|---|---|---|---|---|"
ship_total=0 scp_total=0
for rep in $(seq "$reps"); do
  read -r s_t s_m < <(measure ship "$work/dest-ship" "$work/app.jar")
  read -r c_t c_m < <(measure scp "$work/dest-scp" "$work/app.jar")
  read -r p_t _ < <(measure ssh_cat "$work/dest-ssh" "$work/app.jar")
  printf '| %s | %s | %.1f | %s | %.1f | %s |\n' "$rep" "$s_t" "$(echo "$s_m/1024" | bc -l)" "$c_t" "$(echo "$c_m/1024" | bc -l)" "$p_t"
  ship_total=$(echo "$ship_total + $s_t" | bc -l)
  scp_total=$(echo "$scp_total + $c_t" | bc -l)
done
printf '\nmean: bg-ship %.2fs, scp %.2fs, bg-ship/scp = %.2f (%s MiB, %s runs each)\n' \
  "$(echo "$ship_total/$reps" | bc -l)" "$(echo "$scp_total/$reps" | bc -l)" \
  "$(echo "$ship_total/$scp_total" | bc -l)" "$size_mib" "$reps"

# Memory stays flat: a 1 GiB file (sparse here, so the disk is not the limit).
rm -f "$work/app.jar"
truncate -s 1G "$work/big.jar"
read -r b_t b_m < <(measure ship "$work/dest-big" "$work/big.jar")
printf 'bg-ship, 1 GiB: %ss, max RSS %.1f MiB\n' "$b_t" "$(echo "$b_m/1024" | bc -l)"
