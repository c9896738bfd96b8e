#!/usr/bin/env bash
# Installs what `cargo test --workspace` starts besides the binaries (a real
# sshd, nginx and JVM on loopback, groovy for the Jenkins pipeline shim, ...)
# on Debian or Ubuntu. Nothing missing: nothing done. As root, the missing
# packages are installed with apt-get (after an `apt-get update`); otherwise
# the `sudo apt-get install` line that does it is printed and the exit status
# is 1. `--check` only says what is missing, as a non-root run does.
# Usage: bash scripts/install-test-deps.sh [--check]
set -euo pipefail

# What the tests run, and the Debian package that has it. A path is checked as
# it is (the test rig runs nginx and sshd from /usr/sbin), a name on PATH. The
# test rig reads this table too: a missing program's panic names its package.
needs='
/usr/sbin/nginx   nginx-light
/usr/sbin/sshd    openssh-server
ssh               openssh-client
ssh-keygen        openssh-client
ssh-agent         openssh-client
ssh-add           openssh-client
scp               openssh-client
java              default-jdk-headless
javac             default-jdk-headless
jar               default-jdk-headless
groovy            groovy
git               git
curl              curl
pgrep             procps
ps                procps
flock             util-linux
ip                iproute2
'

check_only=false
case "${1:-}" in
  '') ;;
  --check) check_only=true ;;
  *) echo "usage: bash scripts/install-test-deps.sh [--check]" >&2; exit 2 ;;
esac

# Sets missing_programs and packages (each package once) from the table.
find_missing() {
  missing_programs=() packages=()
  local program package
  while read -r program package; do
    [ -n "$program" ] || continue
    if [[ $program == /* ]]; then
      [ -x "$program" ] && continue
    else
      command -v "$program" >/dev/null 2>&1 && continue
    fi
    missing_programs+=("$program")
    [[ " ${packages[*]-} " == *" $package "* ]] || packages+=("$package")
  done <<< "$needs"
}

find_missing
if [ ${#packages[@]} -eq 0 ]; then
  echo "install-test-deps: everything the tests need is installed"
  exit 0
fi
echo "install-test-deps: missing ${missing_programs[*]}"
if ! $check_only && [ "$EUID" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "install-test-deps: installing ${packages[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # Packages may try to start their own services; the tests never use those.
  apt-get install -y -qq "${packages[@]}" >/dev/null
  find_missing
  if [ ${#missing_programs[@]} -gt 0 ]; then
    echo "install-test-deps: still missing after the install: ${missing_programs[*]}" >&2
    exit 1
  fi
  exit 0
fi
echo "install them with:"
echo "  sudo apt-get install -y ${packages[*]}"
exit 1
