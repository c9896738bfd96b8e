# Sourced by deploy-vs-seed.sh and deploy-wan.sh: the setup of a whole
# blue/green deploy on loopback, and the seed's and the toolkit's deploy
# scripts. The caller sets `root` (the workspace) and `start_ms`, then:
#
#   deploy_setup                       builds, starts sshd, nginx, two apps
#   write_seed NAME SSH_PORT HTTP_BLUE HTTP_GREEN
#   write_toolkit NAME SSH_PORT HTTP_BLUE HTTP_GREEN [VAR=VALUE]...
#   deploy NAME N                      runs $work/NAME.sh for build N: wall s
#   app_start                          the app's own start alone: wall s
#
# SSH_PORT is where the deploy scripts reach sshd (its own `$port`, or a
# slow link in front of it); HTTP_BLUE and HTTP_GREEN where they reach the
# app on the blue and the green port (the same ports, or slow links). The
# toolkit's VAR=VALUE are exported for its six calls (BG_SSH_CLIENT=...).
#
# After `deploy NAME N`, $work/NAME-N.out holds the script's output and
# $work/NAME-N.ssh "CONNECTIONS SESSIONS": the logins and session channels
# sshd saw during that deploy (sessions only with `LogLevel DEBUG1` in
# `sshd_extra`; see below).
#
# Variables the caller may set before deploy_setup: `sshd_extra`, more lines
# for sshd_config (no SetEnv: sshd takes its first SetEnv line only);
# `shell_ms`, a login shell that takes that long (below); `extra_pids`, an
# array of processes the cleanup also stops. deploy_setup installs the EXIT
# trap.
#
# shell_ms > 0: sshd runs every command through the user's login shell, and
# bash reads ~/.bashrc even for `ssh host CMD`. The throwaway sshd then gives
# its sessions a HOME of their own in the temp dir (`SetEnv HOME=`), whose
# .bashrc sleeps shell_ms first, before the usual "not interactive: return"
# guard, as a heavy rc file does. No real ~/.bashrc is touched. Otherwise
# bash skips ~/.bashrc (SetEnv SHLVL=1) unless BG_BENCH_BASHRC=1.
#
# Needs /usr/sbin/sshd, ssh, scp, ssh-keygen, /usr/sbin/nginx, javac, jar,
# java, curl, fuser and bc (Debian: openssh-server openssh-client
# nginx-light default-jdk-headless curl psmisc bc). Everything started
# listens on 127.0.0.1 only and is stopped on exit.

work= sshd_pid= nginx_pid= blue= green= port=
sshd_extra=${sshd_extra:-}
shell_ms=${shell_ms:-0}
extra_pids=()

cleanup() {
  # The caller's helpers first (a slow link drops its connections with it).
  local pid
  for pid in "${extra_pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  # Our apps, by the ports this script chose; then nginx and sshd by pid.
  for p in $blue $green; do fuser -s -k -TERM "$p/tcp" 2>/dev/null || true; done
  [ -n "$nginx_pid" ] && kill "$nginx_pid" 2>/dev/null || true
  [ -n "$sshd_pid" ] && kill "$sshd_pid" 2>/dev/null || true
  # sshd's sessions outlive its listener: end those on its port too, which
  # also ends any shared client connection (ControlPersist) held to it.
  [ -n "$port" ] && { fuser -s -k -TERM "$port/tcp" 2>/dev/null || true; }
  sleep 0.5
  for p in $blue $green; do fuser -s -k "$p/tcp" 2>/dev/null || true; done
  [ -n "$work" ] && rm -rf "$work"
}

free_port() { # a port nothing listens on now, below the kernel's ephemeral ports
  local p low
  read -r low _ < /proc/sys/net/ipv4/ip_local_port_range
  while :; do
    p=$(( 10000 + RANDOM % (low - 10000) ))
    (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null || { echo "$p"; return; }
  done
}

wait_port() { # PORT: until something answers HTTP there (max 30 s)
  for _ in $(seq 300); do
    curl -s -o /dev/null "http://127.0.0.1:$1/" && return 0
    sleep 0.1
  done
  echo "nothing answers on $1" >&2
  tail -n 20 "$work"/deploy/initial-"$1".log 2>/dev/null >&2 || true
  exit 1
}

deploy_setup() {
  for tool in /usr/sbin/sshd /usr/sbin/nginx ssh scp ssh-keygen javac jar java curl fuser bc; do
    command -v "$tool" >/dev/null || { echo "needs $tool" >&2; exit 2; }
  done
  cargo build --release --quiet --workspace --manifest-path "$root/Cargo.toml"
  bin=$root/target/release

  work=$(mktemp -d /tmp/bg-deploy-bench.XXXXXX)
  trap cleanup EXIT
  blue=$(free_port)
  green=$(free_port)
  [ "$blue" != "$green" ] || green=$(( blue + 1 ))
  site=dev

  # --- the stand-in jar, as tests/rig/app.rs builds it -----------------------
  mkdir -p "$work/classes" "$work/jars" "$work/deploy" "$work/locks"
  javac -nowarn -XDignore.symbol.file -d "$work/classes" "$root/tests/rig/TestApp.java" 2>/dev/null
  jar --create --file "$work/app.jar" --main-class TestApp -C "$work/classes" .
  # The same opts for both: the app's own start time is START_MS plus the JVM's.
  java_opts="-XX:TieredStopAtLevel=1 -Xshare:auto -Xmx256m -Dapp.startDelay=$start_ms"
  printf "version = '1.0.0'\n" > "$work/build.gradle"

  # --- a throwaway sshd on loopback (benches/sshd.sh) -------------------------
  . "$root/benches/sshd.sh"
  if [ "$shell_ms" -gt 0 ]; then
    mkdir "$work/home"
    # shellcheck disable=SC2016
    printf 'sleep %s\ncase $- in *i*) ;; *) return;; esac\n' \
      "$(echo "scale=3; $shell_ms / 1000" | bc -l)" > "$work/home/.bashrc"
    BG_BENCH_BASHRC=1 start_sshd "$work" "$sshd_extra"$'\n'"SetEnv HOME=$work/home"
  else
    start_sshd "$work" "$sshd_extra"
  fi
  # The toolkit gets the host key pinned; the seed gets an empty known_hosts
  # and StrictHostKeyChecking=no, as it has in its pipeline.
  : > "$work/seed_known_hosts"

  # --- nginx with its own prefix, as tests/rig/nginx.rs configures it --------
  ng=$work/nginx
  mkdir -p "$ng/sites-available" "$ng/sites-enabled" "$ng/tmp" "$ng/logs"
  nginx_port=$(free_port)
  local nginx_user=
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
  site_file "$blue" "$green" > "$ng/sites-available/${site}_$green"
  site_file "$green" "$blue" > "$ng/sites-available/${site}_$blue"
  ln -s "$ng/sites-available/${site}_$green" "$ng/sites-enabled/"
  nginx_base="/usr/sbin/nginx -p $ng -c $ng/nginx.conf -e $ng/logs/error.log"
  $nginx_base 2> "$work/nginx.out" &
  nginx_pid=$!

  # The steady state before a deploy: blue active, green the old backup; both run.
  for p in "$blue" "$green"; do
    # shellcheck disable=SC2086
    (setsid nohup java $java_opts -Dserver.port="$p" -Dapp.version=initial -jar "$work/app.jar" \
      > "$work/deploy/initial-$p.log" 2>&1 < /dev/null &)
  done
  wait_port "$nginx_port"; wait_port "$blue"; wait_port "$green"
}

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

# --- (a) the seed's stage shell, one line per seed line ----------------------
# Adapted only where the temp setup needs it: `-F ssh_config` and the alias
# `apphost` for `ubuntu@$host`; temp paths for /etc/nginx and DEPLOY_PATH;
# ports (the agent reaches the app's port through `app_port`: itself on
# loopback, a slow link in deploy-wan.sh); no `sudo` (we are root, sudo is
# not installed); `nginx -s reload` with our prefix for `systemctl reload
# nginx`; the java opts above for `-Xms4096m -Xmx8192m`. Run with `sh -e`
# semantics, as Jenkins' `sh` step does.
write_seed() { # NAME SSH_PORT HTTP_BLUE HTTP_GREEN
  local name=$1 ssh_port=$2 http_blue=$3 http_green=$4
  # What the seed's `ubuntu@host` means here: the same user, key and port for
  # ssh and scp, via a config file. Nothing else is set.
  cat > "$work/$name.ssh_config" <<CONFIG
Host apphost
  HostName 127.0.0.1
  Port $ssh_port
  User $user
  IdentityFile $work/client_ed25519
  IdentitiesOnly yes
  BatchMode yes
  UserKnownHostsFile $work/seed_known_hosts
  LogLevel ERROR
CONFIG
  cat > "$work/$name.sh" <<SEED
set -e
service_blue_port=$blue
service_green_port=$green
ENV=$site
JAR_FILE_PATH=$work/jars
DEPLOY_PATH=$work/deploy
ssh() { command ssh -F $work/$name.ssh_config "\$@"; }
scp() { command scp -F $work/$name.ssh_config "\$@"; }
app_port() { if [ "\$1" = $blue ]; then echo $http_blue; else echo $http_green; fi; }

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
	  if curl -s "http://127.0.0.1:\$(app_port \$deployment_target_port)" > /dev/null
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
}

# --- (b) the toolkit's six calls ---------------------------------------------
write_toolkit() { # NAME SSH_PORT HTTP_BLUE HTTP_GREEN [VAR=VALUE]...
  local name=$1 ssh_port=$2 http_blue=$3 http_green=$4 extra=
  shift 4
  [ "$#" = 0 ] || extra="export $*"
  # The host key as the toolkit pins it, for the port it dials.
  [ "$ssh_port" = "$port" ] || grep -q "^\[127.0.0.1\]:$ssh_port " "$work/known_hosts" \
    || echo "[127.0.0.1]:$ssh_port $(cut -d' ' -f1,2 "$work/host_ed25519.pub")" >> "$work/known_hosts"
  cat > "$work/$name.sh" <<TOOLKIT
set -euo pipefail
export BG_HOST=$user@127.0.0.1:$ssh_port BG_SSH_KEY=$work/client_ed25519 BG_KNOWN_HOSTS=$work/known_hosts
export BG_SITE=$site BG_BLUE_PORT=$blue BG_GREEN_PORT=$green
export BG_SITES_AVAILABLE=$ng/sites-available BG_SITES_ENABLED=$ng/sites-enabled
$extra
lock=(--lock-dir $work/locks)
t=\$EPOCHREALTIME
step() { local now=\$EPOCHREALTIME; echo "step \$1 \$(echo "\$now - \$t" | bc -l)" >&2; t=\$now; }
VERSION=\$($bin/gradle-version --dir $work); step gradle-version
eval "\$($bin/bg-detect-port --format env)"; step bg-detect-port
TARGET=\$BG_TARGET_PORT ACTIVE=\$BG_ACTIVE_PORT
if [ "\$TARGET" = $blue ]; then URL_PORT=$http_blue; else URL_PORT=$http_green; fi
$bin/bg-stop-port --port "\$TARGET" --protect-port "\$ACTIVE" "\${lock[@]}" -q; step bg-stop-port
eval "\$($bin/bg-ship --artifact $work/jars/app-\$BUILD_NUMBER.jar --deploy-path $work/deploy \\
  --port "\$TARGET" --profile dev --java-opts "$java_opts -Dapp.version=\$BUILD_NUMBER" \\
  "\${lock[@]}" --format env -q)"; step bg-ship
$bin/bg-healthcheck --url "http://127.0.0.1:\$URL_PORT/actuator/health" --interval 100ms \\
  --timeout 60s --watch-pid "\$BG_PID" --log-file "\$BG_LOG_FILE" -q; step bg-healthcheck
$bin/bg-switch --port "\$TARGET" --test-cmd "$nginx_base -t -q" \\
  --reload-cmd "$nginx_base -s reload" --nginx-pid-file $ng/nginx.pid --history-file $work/history.jsonl "\${lock[@]}" -q; step bg-switch
TOOLKIT
}

ssh_counts() { # what sshd logged so far: "CONNECTIONS SESSIONS"
  # Lines of sshd's processes can run together in its log: count matches.
  echo "$(grep -o 'Accepted publickey' "$work/sshd.log" | wc -l)" \
    "$(grep -o 'ctype session' "$work/sshd.log" | wc -l)"
}

deploy() { # NAME N -> wall seconds; checks nginx then serves build N
  local name=$1 n=$2 t0 t1 before after
  cp "$work/app.jar" "$work/jars/app-$n.jar"   # a versioned name, as the seed's
  before=$(ssh_counts)
  t0=$EPOCHREALTIME
  # Bounded: the seed's own loops sleep 100 s at most; a hung deploy fails.
  VERSION=$n BUILD_NUMBER=$n timeout 300 bash "$work/$name.sh" > "$work/$name-$n.out" 2>&1 \
    || { cat "$work/$name-$n.out" >&2; echo "$name deploy $n failed" >&2; exit 1; }
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
    echo "$name deploy $n: nginx does not serve it; it serves: $(curl -s "http://127.0.0.1:$nginx_port/")" >&2
    cat "$work/$name-$n.out" >&2; ls -l "$ng/sites-enabled" >&2; tail -5 "$ng/logs/error.log" >&2
    for p in $blue $green; do echo "$p: $(curl -s "http://127.0.0.1:$p/")" >&2; done
    exit 1
  }
  after=$(ssh_counts)
  # shellcheck disable=SC2086
  set -- $before $after
  echo "$(( $3 - $1 )) $(( $4 - $2 ))" > "$work/$name-$n.ssh"
  echo "$t1 - $t0" | bc -l
}

# The app's own start time here: from `java` to the first HTTP answer, started
# directly, with no deploy around it.
app_start() {
  local p t0 t1
  p=$(free_port)
  t0=$EPOCHREALTIME
  # shellcheck disable=SC2086
  java $java_opts -Dserver.port="$p" -jar "$work/app.jar" > /dev/null 2>&1 < /dev/null &
  local pid=$! deadline=$((EPOCHSECONDS + 60))
  until curl -s -o /dev/null "http://127.0.0.1:$p/"; do
    [ "$EPOCHSECONDS" -lt "$deadline" ] || { echo "the app did not answer on $p within 60 s" >&2; exit 1; }
    sleep 0.01
  done
  t1=$EPOCHREALTIME
  kill "$pid"; wait "$pid" 2>/dev/null || true
  echo "$t1 - $t0" | bc -l
}
