#!/usr/bin/env bash
# A complete local blue/green deploy, for a newcomer: builds the binaries,
# starts nginx with its own prefix in a temp dir on a loopback port (never the
# system nginx), starts the stand-in app as v1 on the blue port, deploys v2
# through the six stages, shows what nginx serves before and after, cleans
# everything up, and says how long it all took. Usage: bash tests/demo.sh
# (BG_DEMO_BIN=DIR: use the binaries in DIR instead of building them).
set -euo pipefail
SECONDS=0

root=$(cd "$(dirname "$0")/.." && pwd)
bold=$'\e[1m'; off=$'\e[0m'
[ -t 1 ] || { bold=''; off=''; }
say() { printf '\n%s==> %s%s\n' "$bold" "$*" "$off"; }
run() { printf '%s$ %s%s\n' "$bold" "$*" "$off" >&2; "$@"; }

need() { # need PROGRAM PACKAGE
  command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ] && return 0
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    say "installing $2"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$2" >/dev/null 2>&1 \
      || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$2" >/dev/null; }
  else
    echo "demo: $1 is missing; install it with: sudo apt-get install -y $2" >&2
    exit 1
  fi
}
need nginx nginx-light
need javac default-jdk-headless
nginx_bin=$(command -v nginx || echo /usr/sbin/nginx)

if [ -n "${BG_DEMO_BIN:-}" ]; then
  bin=$BG_DEMO_BIN
else
  # cargo's own progress on stderr: a first build takes minutes.
  say "building the binaries (cargo build --workspace --bins)"
  (cd "$root" && "${CARGO:-cargo}" build --workspace --bins)
  target=${CARGO_TARGET_DIR:-target}
  [[ $target == /* ]] || target=$root/$target
  bin=$target/debug
fi
export PATH="$bin:$PATH"

# How long the demo has run: 42s, 2m 05s.
took() {
  if [ "$SECONDS" -lt 60 ]; then echo "${SECONDS}s"; else printf '%dm %02ds\n' $((SECONDS / 60)) $((SECONDS % 60)); fi
}

work=$(mktemp -d "${TMPDIR:-/tmp}/bg-demo.XXXXXX")
cleanup() {
  local status=$?
  set +e
  local pids=() pidfile pid i
  for pidfile in "$work"/deploy/app-*.pid "$work"/v1.pid "$work"/nginx/nginx.pid; do
    [ -f "$pidfile" ] && pids+=("$(cat "$pidfile")")
  done
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null; done   # TERM: nginx and the apps stop cleanly
  for pid in "${pids[@]}"; do
    for i in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.05; done
    kill -9 "$pid" 2>/dev/null
  done
  rm -rf "$work"
  if [ "$status" -eq 0 ]; then
    say "cleaned up; the whole demo took $(took)"
  else
    echo "demo: failed after $(took) (cleaned up)" >&2
  fi
}
trap cleanup EXIT

# Free loopback ports: the first that nothing answers on.
free_port() {
  local port
  for port in $(seq "$1" $(($1 + 200))); do
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null || { echo "$port"; return; }
  done
  echo "demo: no free port near $1" >&2; exit 1
}
blue=$(free_port 18000); green=$(free_port $((blue + 1))); listen=$(free_port 18080)

# GET through plain bash, so that the demo needs no curl.
get() {
  exec 3<>"/dev/tcp/127.0.0.1/$1" || return 1
  printf 'GET %s HTTP/1.0\r\nHost: demo\r\n\r\n' "$2" >&3
  sed -n '/^\r$/,$p' <&3 | tail -n +2
  exec 3<&-
}

say "building the stand-in app (a tiny Java HTTP server standing for a Spring Boot jar)"
mkdir -p "$work/project/build/libs" "$work/classes" "$work/deploy"
# Every JVM without its perf data file, which the JVM keeps in /tmp whatever
# TMPDIR says: the demo leaves nothing behind.
jvm=-XX:-UsePerfData
javac "-J$jvm" -nowarn -d "$work/classes" "$root/tests/rig/TestApp.java" 2>/dev/null
printf "plugins {\n  id 'org.springframework.boot' version '3.2.0'\n}\ngroup = 'com.example'\nversion = '2.0.0'\n" > "$work/project/build.gradle"
jar "-J$jvm" --create --file "$work/project/build/libs/demo-2.0.0.jar" --main-class TestApp -C "$work/classes" .
cat "$work/project/build.gradle"

say "starting nginx on 127.0.0.1:$listen (prefix $work/nginx) and v1 on the blue port $blue"
mkdir -p "$work/nginx/sites-available" "$work/nginx/sites-enabled" "$work/nginx/tmp"
user=''; [ "$(id -u)" = 0 ] && user='user root;'
cat > "$work/nginx/nginx.conf" <<CONF
$user
pid $work/nginx/nginx.pid;
error_log $work/nginx/error.log;
events { worker_connections 64; }
http {
  access_log off;
  client_body_temp_path $work/nginx/tmp/body; proxy_temp_path $work/nginx/tmp/proxy;
  fastcgi_temp_path $work/nginx/tmp/fastcgi; uwsgi_temp_path $work/nginx/tmp/uwsgi; scgi_temp_path $work/nginx/tmp/scgi;
  include $work/nginx/sites-enabled/*;
}
CONF
site() { # the seed's layout: SITE_PORT routes to PORT, the other port is the backup
  cat <<SITE
upstream backend {
    server 127.0.0.1:$1 fail_timeout=60s max_fails=5;
    server 127.0.0.1:$2 backup;
}
server {
    listen 127.0.0.1:$listen;
    add_header X-Upstream \$upstream_addr always;
    location / { proxy_pass http://backend; }
}
SITE
}
site "$blue" "$green" > "$work/nginx/sites-available/demo_$blue"
site "$green" "$blue" > "$work/nginx/sites-available/demo_$green"
ln -s "$work/nginx/sites-available/demo_$blue" "$work/nginx/sites-enabled/demo_$blue"
nginx=("$nginx_bin" -p "$work/nginx" -c "$work/nginx/nginx.conf" -e "$work/nginx/error.log")
"${nginx[@]}"
for _ in $(seq 200); do [ -s "$work/nginx/nginx.pid" ] && break; sleep 0.05; done  # the daemon writes it after forking
java "$jvm" -Dserver.port="$blue" -Dapp.version=1.0.0 -jar "$work/project/build/libs/demo-2.0.0.jar" > "$work/v1.log" 2>&1 &
echo $! > "$work/v1.pid"
bg-healthcheck -q --url "http://127.0.0.1:$blue/actuator/health" --timeout 60s --interval 100ms > /dev/null
printf 'nginx serves: '; get "$listen" /

layout=(--site demo --blue-port "$blue" --green-port "$green"
        --sites-available "$work/nginx/sites-available" --sites-enabled "$work/nginx/sites-enabled")

say "1/6 Get Version"
version=$(run gradle-version --dir "$work/project")
echo "$version"

say "2/6 Detect Port"
run bg-detect-port "${layout[@]}" --format env | tee "$work/detect.env"
source "$work/detect.env"

say "3/6 Stop Port (whatever listens on $BG_TARGET_PORT; the active $BG_ACTIVE_PORT is protected)"
run bg-stop-port --port "$BG_TARGET_PORT" --protect-port "$BG_ACTIVE_PORT" --lock-dir "$work" --grace 5s

say "4/6 Deploy"
run bg-ship --artifact "$work/project/build/libs/demo-$version.jar" --deploy-path "$work/deploy" \
  --port "$BG_TARGET_PORT" --java-opts "$jvm -Dapp.version=$version" --lock-dir "$work" --format env | tee "$work/ship.env"
source "$work/ship.env"

say "5/6 Health Check"
run bg-healthcheck --url "http://127.0.0.1:$BG_TARGET_PORT/actuator/health" --expect-body '"UP"' \
  --watch-pid "$BG_PID" --log-file "$BG_LOG_FILE" --timeout 60s --interval 200ms

say "6/6 Switch"
run bg-switch "${layout[@]}" --port "$BG_TARGET_PORT" \
  --test-cmd "${nginx[*]} -t -q" --reload-cmd "${nginx[*]} -s reload" \
  --nginx-pid-file "$work/nginx/nginx.pid" \
  --verify-url "http://127.0.0.1:$listen/actuator/health" --history-file "$work/history.jsonl" --lock-dir "$work"

say "after the switch"
printf 'nginx serves: '; get "$listen" /
printf 'the backup still runs: '; get "$blue" /
printf 'enabled site: '; ls "$work/nginx/sites-enabled"
printf 'history: '; cat "$work/history.jsonl"
say "done: rollback is one call, bg-switch --port $blue (cleaning up the demo now)"
