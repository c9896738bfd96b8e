complete -c bg-switch -l port -d 'The port to make active: the blue or the green port' -r
complete -c bg-switch -l url -d 'With --previous: the other color\'s health URL, probed from here before any change; {port} is filled with its port (e.g. http://10.0.0.5:{port}/actuator/health)' -r
complete -c bg-switch -l expect-status -d 'With --url: healthy statuses, a list or ranges (200,204,300-399)' -r
complete -c bg-switch -l expect-body -d 'With --url: a regex the body must match' -r
complete -c bg-switch -l test-cmd -d 'Checks nginx\'s configuration after the change, before the reload' -r
complete -c bg-switch -l reload-cmd -d 'Makes nginx load the configuration [default: `systemctl reload nginx` where systemd runs, else `nginx -s reload`]' -r
complete -c bg-switch -l app-host -d 'Managed layout: an app host nginx dials, listed at PORT as primary and at the other port as backup; repeat it for several [default: the hosts already in the file, else 127.0.0.1]' -r
complete -c bg-switch -l verify-url -d 'After the reload, this URL through nginx must answer 2xx, or the switch is undone (exit 1)' -r
complete -c bg-switch -l verify-timeout -d 'How long to wait for --verify-url to answer 2xx' -r
complete -c bg-switch -l verify-settle -d 'How long --verify-url must keep answering 2xx: for a moment after a reload, nginx\'s old workers still serve the previous port' -r
complete -c bg-switch -l cacert -d 'For https URLs: trust only the CA certificates in this PEM file, instead of the built-in roots (as curl\'s --cacert does) [default: Mozilla\'s roots, built into the binary]' -r -F
complete -c bg-switch -l nginx-pid-file -d 'nginx\'s pid file on the nginx host: after the reload, wait until that master runs new workers (it has taken the configuration); missing or unreadable: no wait' -r
complete -c bg-switch -l reload-timeout -d 'How long nginx may take to run new workers after the reload command returns' -r
complete -c bg-switch -l history-file -d 'One JSON line per switch is appended here, on the nginx host [default: /var/lib/bg/SITE.history.jsonl]' -r
complete -c bg-switch -l app-version -d 'The version going live, for the history line (gradle-version\'s BG_VERSION) [default: as bg-ship recorded it in --deploy-path, else as the history last saw the port]' -r
complete -c bg-switch -l deploy-path -d 'The app\'s directory, when nginx runs on the app host: the jar and version bg-ship recorded there for each port (app-PORT.json) go into the history line' -r
complete -c bg-switch -l site -d 'Site name: the symlink layout\'s files are sites-available/NAME_PORT' -r
complete -c bg-switch -l blue-port -d 'The blue port (the target when nothing is active yet)' -r
complete -c bg-switch -l green-port -d 'The green port' -r
complete -c bg-switch -l sites-available -d 'Symlink layout: directory of the site files, one per port' -r
complete -c bg-switch -l sites-enabled -d 'Symlink layout: directory nginx includes, holding the one enabled link' -r
complete -c bg-switch -l upstream-file -d 'Managed layout: the include file holding `upstream NAME { ... }` and nothing else' -r
complete -c bg-switch -l upstream-name -d 'Managed layout: the upstream\'s name' -r
complete -c bg-switch -l lock-timeout -d 'How long to wait for another run holding the same lock before exiting 5' -r
complete -c bg-switch -l lock-dir -d 'Directory of the lock files on the host' -r
complete -c bg-switch -l host -d 'Act on this host over SSH instead of the local machine' -r
complete -c bg-switch -l ssh-user -d 'SSH login name [default: the user in --host, else $USER]' -r
complete -c bg-switch -l ssh-port -d 'SSH port (a :PORT in --host wins) [default: Port in ssh_config, else 22]' -r
complete -c bg-switch -l identity -d 'Private key (its passphrase in BG_SSH_PASSPHRASE) [default: ssh-agent, then ~/.ssh/id_ed25519, id_ecdsa, id_rsa]' -r -F
complete -c bg-switch -l known-hosts -d 'Host keys to trust [default: ~/.ssh/known_hosts]' -r -F
complete -c bg-switch -l host-key-check -d 'Unknown or changed host keys: refuse (strict), add unknown ones (accept-new), or do not check (off) [default: StrictHostKeyChecking in ssh_config, else strict]' -r -f -a "strict\t'An unknown or changed key is refused'
accept-new\t'An unknown key is added to the file; a changed one is refused'
off\t'No check at all (a warning says so)'"
complete -c bg-switch -l connect-timeout -d 'Limit for the TCP connect and the SSH handshake [default: ConnectTimeout in ssh_config, else 10s]' -r
complete -c bg-switch -l ssh-config -d 'OpenSSH client configuration to read (Host, HostName, User, Port, IdentityFile, ProxyJump...) [default: ~/.ssh/config]' -r -F
complete -c bg-switch -l ssh-client -d 'How to reach the host: the built-in client (ssh2), or the system\'s `ssh` (openssh), which shares one connection across the stages of a pipeline and knows all of OpenSSH\'s options' -r -f -a "ssh2\t'libssh2, built in: needs nothing on the agent (the static build\'s choice)'
openssh\t'The system\'s `ssh`, with a shared connection (ControlMaster)'"
complete -c bg-switch -l ssh-persist -d 'openssh client: how long its shared connection stays open after the last use (ControlPersist)' -r
complete -c bg-switch -l format -d 'Result format on stdout: the value alone, one JSON object, or BG_KEY=value lines' -r -f -a "text\t'The one value a shell wants, or one human line'
json\t'One JSON object on one line'
env\t'`BG_KEY=value` lines, shell-safe'"
complete -c bg-switch -l previous -d 'Switch back to the other color (a rollback), only when its app is alive and --url answers healthy there; else exit 3, nothing changed'
complete -c bg-switch -l init -d 'Managed layout: write the upstream file when none exists yet (else that is exit 3)'
complete -c bg-switch -l no-target-check -d 'Switch even when nothing answers at the target port\'s addresses (checked from the nginx host before any change; a dead target is exit 3)'
complete -c bg-switch -l insecure -d 'For https URLs: do not verify the server\'s certificate at all (a warning says so on stderr)'
complete -c bg-switch -l dry-run -d 'Say what would change, and change nothing'
complete -c bg-switch -l no-ssh-config -d 'Read no ssh_config file, not even --ssh-config\'s: only the flags and BG_* variables count'
complete -c bg-switch -l sudo -d 'Run privileged commands as `sudo -n ...` (BG_SUDO=1)'
complete -c bg-switch -s v -l verbose -d 'Say more on stderr (-vv for even more)'
complete -c bg-switch -s q -l quiet -d 'Say less on stderr (-qq: errors only)'
complete -c bg-switch -s h -l help -d 'Print help (see more with \'--help\')'
complete -c bg-switch -s V -l version -d 'Print version'
