# Sourced by the benchmark scripts: a throwaway sshd on loopback, as
# tests/rig/sshd.rs starts one. `start_sshd WORK` generates host and client
# keys in WORK, starts sshd on a free port and sets `user`, `port` and
# `sshd_pid`; WORK/known_hosts then pins its host key. The caller kills
# "$sshd_pid" when done. `start_sshd WORK EXTRA` adds the lines EXTRA to
# its config (sshd takes its first SetEnv line only: add one only with
# BG_BENCH_BASHRC=1, which drops ours).
#
# BG_BENCH_BASHRC=1 keeps the login shell's ~/.bashrc, which the sshd
# otherwise skips (SetEnv SHLVL=1): see the header of each benchmark.
start_sshd() {
  local work=$1 extra=${2:-}
  user=$(id -un)
  ssh-keygen -q -t ed25519 -N '' -f "$work/host_ed25519"
  ssh-keygen -q -t ed25519 -N '' -f "$work/client_ed25519"
  cp "$work/client_ed25519.pub" "$work/authorized_keys"
  mkdir -p /run/sshd
  sshd_pid=
  for _ in 1 2 3 4 5 6 7 8 9 10; do
    port=$(( 20000 + RANDOM % 30000 ))
    cat > "$work/sshd_config" <<CONFIG
Port $port
ListenAddress 127.0.0.1
HostKey $work/host_ed25519
AuthorizedKeysFile $work/authorized_keys
PidFile $work/sshd.pid
StrictModes no
UsePAM no
PasswordAuthentication no
KbdInteractiveAuthentication no
PubkeyAuthentication yes
PermitRootLogin prohibit-password
AllowUsers $user
Subsystem sftp internal-sftp
$([ "${BG_BENCH_BASHRC:-0}" = 1 ] || echo "SetEnv SHLVL=1")
$extra
CONFIG
    /usr/sbin/sshd -D -e -f "$work/sshd_config" 2> "$work/sshd.log" &
    sshd_pid=$!
    for _ in $(seq 100); do
      grep -q "Server listening" "$work/sshd.log" 2>/dev/null && break
      kill -0 "$sshd_pid" 2>/dev/null || break
      sleep 0.05
    done
    grep -q "Server listening" "$work/sshd.log" && break
    kill "$sshd_pid" 2>/dev/null || true
    sshd_pid=
  done
  [ -n "$sshd_pid" ] || { cat "$work/sshd.log" >&2; return 1; }
  echo "[127.0.0.1]:$port $(cut -d' ' -f1,2 "$work/host_ed25519.pub")" > "$work/known_hosts"
}
