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
# java, curl and fuser (Debian: openssh-server openssh-client nginx-light
# default-jdk-headless curl psmisc). Builds the binaries in release mode first.
# Everything it starts listens on 127.0.0.1 only and is stopped on exit.
set -euo pipefail

reps=${1:-3}
start_ms=${2:-1500}
root=$(cd "$(dirname "$0")/.." && pwd)

for tool in /usr/sbin/sshd /usr/sbin/nginx ssh scp ssh-keygen javac jar java curl fuser; do
  command -v "$tool" >/dev/null || { echo "needs $tool" >&2; exit 2; }
done
cargo build --release --quiet --workspace --manifest-path "$root/Cargo.toml"
bin=$root/target/release

work=$(mktemp -d /tmp/bg-deploy-bench.XXXXXX)
sshd_pid= nginx_pid= blue= green=
cleanup() {
  # Our apps, by the ports this script chose; then nginx and sshd by pid.
  for p in $blue $green; do fuser -s -k -TERM "$p/tcp" 2>/dev/null || true; done
  [ -n "$nginx_pid" ] && kill "$nginx_pid" 2>/dev/null || true
  [ -n "$sshd_pid" ] && kill "$sshd_pid" 2>/dev/null || true
  sleep 0.5
  for p in $blue $green; do fuser -s -k "$p/tcp" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

free_port() { # a port nothing listens on now, below the kernel's ephemeral ports
  local p low
  read -r low _ < /proc/sys/net/ipv4/ip_local_port_range
  while :; do
    p=$(( 10000 + RANDOM % (low - 10000) ))
    (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null || { echo "$p"; return; }
  done
}
blue=$(free_port)
green=$(free_port)
[ "$blue" != "$green" ] || green=$(( blue + 1 ))
site=dev

# --- the stand-in jar, as tests/rig/app.rs builds it -------------------------
mkdir -p "$work/classes" "$work/jars" "$work/deploy" "$work/locks"
javac -nowarn -XDignore.symbol.file -d "$work/classes" "$root/tests/rig/TestApp.java" 2>/dev/null
jar --create --file "$work/app.jar" --main-class TestApp -C "$work/classes" .
# The same opts for both: the app's own start time is START_MS plus the JVM's.
java_opts="-XX:TieredStopAtLevel=1 -Xshare:auto -Xmx256m -Dapp.startDelay=$start_ms"
printf "version = '1.0.0'\n" > "$work/build.gradle"

# --- a throwaway sshd on loopback (benches/sshd.sh) ---------------------------
. "$root/benches/sshd.sh"
start_sshd "$work"
# The toolkit gets the host key pinned; the seed gets an empty known_hosts
# and StrictHostKeyChecking=no, as it has in its pipeline.
: > "$work/seed_known_hosts"
# What the seed's `ubuntu@host` means here: the same user, key and port for
# ssh and scp, via a config file. Nothing else is set.
cat > "$work/ssh_config" <<CONFIG
Host apphost
  HostName 127.0.0.1
  Port $port
  User $user
  IdentityFile $work/client_ed25519
  IdentitiesOnly yes
  BatchMode yes
  UserKnownHostsFile $work/seed_known_hosts
  LogLevel ERROR
CONFIG

# --- nginx with its own prefix, as tests/rig/nginx.rs configures it ----------
ng=$work/nginx
mkdir -p "$ng/sites-available" "$ng/sites-enabled" "$ng/tmp" "$ng/logs"
nginx_port=$(free_port)
nginx_user=
[ "$(id -u)" = 0 ] && nginx_user="user root;"
cat > "$ng/nginx.conf" <<CONFIG
$nginx_user
daemon off;
master_process on;
worker_processes 1;
pid $ng/nginx.pid;
error_log $ng/logs/error.log notice;
events { worker_connections 512; }
http {
  access_log off;
  client_body_temp_path $ng/tmp/body;
  proxy_temp_path $ng/tmp/proxy;
  fastcgi_temp_path $ng/tmp/fastcgi;
  uwsgi_temp_path $ng/tmp/uwsgi;
  scgi_temp_path $ng/tmp/scgi;
  include $ng/sites-enabled/*;
}
CONFIG
# The seed's two files, named after their *backup* port as in the seed:
# dev_GREEN routes to blue, dev_BLUE routes to green.
site_file() { # PRIMARY BACKUP
  cat <<CONFIG
upstream backend {
    server 127.0.0.1:$1 fail_timeout=60s max_fails=5;
    server 127.0.0.1:$2 backup;
}
server {
    listen 127.0.0.1:$nginx_port;
    location / { proxy_pass http://backend; }
}
CONFIG
}
site_file "$blue" "$green" > "$ng/sites-available/${site}_$green"
site_file "$green" "$blue" > "$ng/sites-available/${site}_$blue"
ln -s "$ng/sites-available/${site}_$green" "$ng/sites-enabled/"
nginx_base="/usr/sbin/nginx -p $ng -c $ng/nginx.conf -e $ng/logs/error.log"
$nginx_base 2> "$work/nginx.out" &
nginx_pid=$!

wait_port() { # PORT: until something answers HTTP there (max 30 s)
  for _ in $(seq 300); do
    curl -s -o /dev/null "http://127.0.0.1:$1/" && return 0
    sleep 0.1
  done
  echo "nothing answers on $1" >&2
  tail -n 20 "$work"/deploy/initial-"$1".log 2>/dev/null >&2 || true
  exit 1
}
# The steady state before a deploy: blue active, green the old backup; both run.
for p in "$blue" "$green"; do
  # shellcheck disable=SC2086
  (setsid nohup java $java_opts -Dserver.port="$p" -Dapp.version=initial -jar "$work/app.jar" \
    > "$work/deploy/initial-$p.log" 2>&1 < /dev/null &)
done
wait_port "$nginx_port"; wait_port "$blue"; wait_port "$green"

# --- (a) the seed's stage shell, one line per seed line ----------------------
# Adapted only where the temp setup needs it: `-F ssh_config` and the alias
# `apphost` for `ubuntu@$host`; temp paths for /etc/nginx and DEPLOY_PATH;
# ports; no `sudo` (we are root, sudo is not installed); `nginx -s reload`
# with our prefix for `systemctl reload nginx`; the java opts above for
# `-Xms4096m -Xmx8192m`. Run with `sh -e` semantics, as Jenkins' `sh` step does.
cat > "$work/seed.sh" <<SEED
set -e
service_blue_port=$blue
service_green_port=$green
ENV=$site
JAR_FILE_PATH=$work/jars
DEPLOY_PATH=$work/deploy
ssh() { command ssh -F $work/ssh_config "\$@"; }
scp() { command scp -F $work/ssh_config "\$@"; }

# Detect port
if ssh -o StrictHostKeyChecking=no apphost "test -e $ng/sites-enabled/${site}_$green"
then
    deployment_target_port=\$service_green_port
else
    deployment_target_port=\$service_blue_port
fi

# Stop port
ssh -o StrictHostKeyChecking=no apphost "fuser -s -k \$deployment_target_port/tcp"
for retry_count in \$(seq 10)
    do
        if ssh apphost "test -z \\\$(fuser \$deployment_target_port/tcp)"; then
            echo "Server down successfully."
            sleep 2
            break
        fi

        echo "Retry After 5 secs"
        sleep 5
    done

# Deploy
scp -o StrictHostKeyChecking=no \${JAR_FILE_PATH}/app-\${VERSION}.jar apphost:\${DEPLOY_PATH}
ssh -o StrictHostKeyChecking=no apphost "nohup java -jar -Dserver.port=\$deployment_target_port -Dspring.profiles.active=dev -Dapp.version=\${VERSION} $java_opts \${DEPLOY_PATH}/app-\${VERSION}.jar > \${DEPLOY_PATH}/\${BUILD_NUMBER}.log &" &

# Health check
for retry_count in \$(seq 5)
	do
	  if curl -s "http://127.0.0.1:\$deployment_target_port" > /dev/null
	  then
	      echo "Health Check Successful"
	      break
	  fi

	  if [ \$retry_count -eq 10 ]
	  then
	    echo "Health Check Failed"
	    exit 1
	  fi

	  echo "Retry After 10 Secs"
	  sleep 10
	done

# Switch
if [ \$deployment_target_port == \$service_blue_port ]
	then
	    ssh -o StrictHostKeyChecking=no apphost "unlink $ng/sites-enabled/\${ENV}_$blue && ln -s $ng/sites-available/\${ENV}_$green $ng/sites-enabled && $nginx_base -s reload"
	else
	    ssh -o StrictHostKeyChecking=no apphost "unlink $ng/sites-enabled/\${ENV}_$green && ln -s $ng/sites-available/\${ENV}_$blue $ng/sites-enabled && $nginx_base -s reload"
fi
echo "Switch the reverse proxy direction of nginx to 127.0.0.1:\$deployment_target_port"
SEED

# --- (b) the toolkit's six calls ---------------------------------------------
cat > "$work/toolkit.sh" <<TOOLKIT
set -euo pipefail
export BG_HOST=$user@127.0.0.1:$port BG_SSH_KEY=$work/client_ed25519 BG_KNOWN_HOSTS=$work/known_hosts
export BG_SITE=$site BG_BLUE_PORT=$blue BG_GREEN_PORT=$green
export BG_SITES_AVAILABLE=$ng/sites-available BG_SITES_ENABLED=$ng/sites-enabled
lock=(--lock-dir $work/locks)
t=\$EPOCHREALTIME
step() { local now=\$EPOCHREALTIME; echo "step \$1 \$(echo "\$now - \$t" | bc -l)" >&2; t=\$now; }
VERSION=\$($bin/gradle-version --dir $work); step gradle-version
eval "\$($bin/bg-detect-port --format env)"; step bg-detect-port
TARGET=\$BG_TARGET_PORT ACTIVE=\$BG_ACTIVE_PORT
$bin/bg-stop-port --port "\$TARGET" --protect-port "\$ACTIVE" "\${lock[@]}" -q; step bg-stop-port
eval "\$($bin/bg-ship --artifact $work/jars/app-\$BUILD_NUMBER.jar --deploy-path $work/deploy \\
  --port "\$TARGET" --profile dev --java-opts "$java_opts -Dapp.version=\$BUILD_NUMBER" \\
  "\${lock[@]}" --format env -q)"; step bg-ship
$bin/bg-healthcheck --url "http://127.0.0.1:\$TARGET/actuator/health" --interval 100ms \\
  --timeout 60s --watch-pid "\$BG_PID" --log-file "\$BG_LOG_FILE" -q; step bg-healthcheck
$bin/bg-switch --port "\$TARGET" --test-cmd "$nginx_base -t -q" \\
  --reload-cmd "$nginx_base -s reload" --nginx-pid-file $ng/nginx.pid --history-file $work/history.jsonl "\${lock[@]}" -q; step bg-switch
TOOLKIT

deploy() { # seed|toolkit N -> wall seconds; checks nginx then serves build N
  local kind=$1 n=$2 t0 t1
  cp "$work/app.jar" "$work/jars/app-$n.jar"   # a versioned name, as the seed's
  t0=$EPOCHREALTIME
  if [ "$kind" = seed ]; then
    VERSION=$n BUILD_NUMBER=$n bash "$work/seed.sh" > "$work/$kind-$n.out" 2>&1 \
      || { cat "$work/$kind-$n.out" >&2; exit 1; }
  else
    BUILD_NUMBER=$n bash "$work/toolkit.sh" > "$work/$kind-$n.out" 2>&1 \
      || { cat "$work/$kind-$n.out" >&2; exit 1; }
  fi
  t1=$EPOCHREALTIME
  # Not timed: nginx must now route to the new build (retry briefly while
  # old nginx workers finish).
  # (No `curl | grep -q` under pipefail: grep's early exit can fail curl.)
  local served=
  for _ in $(seq 50); do
    served=$(curl -s "http://127.0.0.1:$nginx_port/" || true)
    [[ $served == *"version=$n "* ]] && break
    sleep 0.1
  done
  [[ $served == *"version=$n "* ]] || {
    echo "$kind deploy $n: nginx does not serve it; it serves: $(curl -s "http://127.0.0.1:$nginx_port/")" >&2
    cat "$work/$kind-$n.out" >&2; ls -l "$ng/sites-enabled" >&2; tail -5 "$ng/logs/error.log" >&2
    for p in $blue $green; do echo "$p: $(curl -s "http://127.0.0.1:$p/")" >&2; done
    exit 1
  }
  echo "$t1 - $t0" | bc -l
}

# The app's own start time here: from `java` to the first HTTP answer, started
# directly, with no deploy around it (the mean of REPETITIONS starts).
app_start() {
  local p t0 t1
  p=$(free_port)
  t0=$EPOCHREALTIME
  # shellcheck disable=SC2086
  java $java_opts -Dserver.port="$p" -jar "$work/app.jar" > /dev/null 2>&1 < /dev/null &
  local pid=$!
  until curl -s -o /dev/null "http://127.0.0.1:$p/"; do sleep 0.01; done
  t1=$EPOCHREALTIME
  kill "$pid"; wait "$pid" 2>/dev/null || true
  echo "$t1 - $t0" | bc -l
}
app_total=0
for _ in $(seq "$reps"); do app_total=$(echo "$app_total + $(app_start)" | bc -l); done
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
