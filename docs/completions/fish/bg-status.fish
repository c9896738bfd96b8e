complete -c bg-status -l deploy-path -d 'The app\'s directory on the app host, where bg-ship writes app-PORT.pid and app-PORT.json [default: none: no pid file, jar or version is shown]' -r
complete -c bg-status -l health-url -d 'Probe each port once at this URL, {port} standing for it (e.g. http://10.0.0.5:{port}/actuator/health), from where bg-status runs; with {host} too (http://{host}:{port}/actuator/health), each port of every app host nginx routes to' -r
complete -c bg-status -l expect-status -d 'Statuses of --health-url that count as healthy: a list or ranges, e.g. 200,204,300-399' -r
complete -c bg-status -l health-timeout -d 'How long each probe may take' -r
complete -c bg-status -l cacert -d 'For https URLs: trust only the CA certificates in this PEM file, instead of the built-in roots (as curl\'s --cacert does) [default: Mozilla\'s roots, built into the binary]' -r -F
complete -c bg-status -l history -d 'Print the last N switches from bg-switch\'s history file instead [default N: 10]' -r
complete -c bg-status -l history-file -d 'bg-switch\'s history file on the nginx host [default: /var/lib/bg/SITE.history.jsonl]' -r
complete -c bg-status -l nginx-pid-file -d 'nginx\'s pid file on the nginx host: when its master\'s workers started tells whether nginx has loaded the files; unreadable: that is not known' -r
complete -c bg-status -l lock-dir -d 'Where bg-switch keeps its lock and marker (nginx host) and bg-ship and bg-stop-port their locks (app host)' -r
complete -c bg-status -l site -d 'Site name: the symlink layout\'s files are sites-available/NAME_PORT' -r
complete -c bg-status -l blue-port -d 'The blue port (the target when nothing is active yet)' -r
complete -c bg-status -l green-port -d 'The green port' -r
complete -c bg-status -l sites-available -d 'Symlink layout: directory of the site files, one per port' -r
complete -c bg-status -l sites-enabled -d 'Symlink layout: directory nginx includes, holding the one enabled link' -r
complete -c bg-status -l upstream-file -d 'Managed layout: the include file holding `upstream NAME { ... }` and nothing else' -r
complete -c bg-status -l upstream-name -d 'Managed layout: the upstream\'s name' -r
complete -c bg-status -l app-ssh-host -d 'The app host, where it is not --host (the nginx host): reached with the same SSH options. Repeat it (or list them, comma-separated) for several app hosts behind one upstream: all are read at the same time, each shown beside the upstream\'s server with its HOST' -r
complete -c bg-status -l host -d 'Act on this host over SSH instead of the local machine' -r
complete -c bg-status -l ssh-user -d 'SSH login name [default: the user in --host, else $USER]' -r
complete -c bg-status -l ssh-port -d 'SSH port (a :PORT in --host wins) [default: Port in ssh_config, else 22]' -r
complete -c bg-status -l identity -d 'Private key (its passphrase in BG_SSH_PASSPHRASE) [default: ssh-agent, then ~/.ssh/id_ed25519, id_ecdsa, id_rsa]' -r -F
complete -c bg-status -l known-hosts -d 'Host keys to trust [default: ~/.ssh/known_hosts]' -r -F
complete -c bg-status -l host-key-check -d 'Unknown or changed host keys: refuse (strict), add unknown ones (accept-new), or do not check (off) [default: StrictHostKeyChecking in ssh_config, else strict]' -r -f -a "strict\t'An unknown or changed key is refused'
accept-new\t'An unknown key is added to the file; a changed one is refused'
off\t'No check at all (a warning says so)'"
complete -c bg-status -l connect-timeout -d 'Limit for the TCP connect and the SSH handshake [default: ConnectTimeout in ssh_config, else 10s]' -r
complete -c bg-status -l ssh-config -d 'OpenSSH client configuration to read (Host, HostName, User, Port, IdentityFile, ProxyJump...) [default: ~/.ssh/config]' -r -F
complete -c bg-status -l ssh-client -d 'How to reach the host: the built-in client (ssh2), or the system\'s `ssh` (openssh), which shares one connection across the stages of a pipeline and knows all of OpenSSH\'s options' -r -f -a "ssh2\t'libssh2, built in: needs nothing on the agent (the static build\'s choice)'
openssh\t'The system\'s `ssh`, with a shared connection (ControlMaster)'"
complete -c bg-status -l ssh-persist -d 'openssh client: how long its shared connection stays open after the last use (ControlPersist)' -r
complete -c bg-status -l format -d 'Result format on stdout: the value alone, one JSON object, or BG_KEY=value lines' -r -f -a "text\t'The one value a shell wants, or one human line'
json\t'One JSON object on one line'
env\t'`BG_KEY=value` lines, shell-safe'"
complete -c bg-status -l insecure -d 'For https URLs: do not verify the server\'s certificate at all (a warning says so on stderr)'
complete -c bg-status -l check -d 'Exit 1 unless a port is active, nginx has loaded the files that say so, no switch is pending, and the active port\'s app listens (and, with --health-url, answers healthy)'
complete -c bg-status -l no-ssh-config -d 'Read no ssh_config file, not even --ssh-config\'s: only the flags and BG_* variables count'
complete -c bg-status -l sudo -d 'Run privileged commands as `sudo -n ...` (BG_SUDO=1)'
complete -c bg-status -s v -l verbose -d 'Say more on stderr (-vv for even more)'
complete -c bg-status -s q -l quiet -d 'Say less on stderr (-qq: errors only)'
complete -c bg-status -s h -l help -d 'Print help (see more with \'--help\')'
complete -c bg-status -s V -l version -d 'Print version'
