complete -c bg-ship -l artifact -d 'The jar (or any file) to ship' -r -F
complete -c bg-ship -l deploy-path -d 'Directory on the host to put it in (created if missing)' -r
complete -c bg-ship -l port -d 'The port the app listens on (-Dserver.port)' -r
complete -c bg-ship -l profile -d 'Spring profile (-Dspring.profiles.active)' -r
complete -c bg-ship -l java-opts -d 'JVM options, split like a shell would (quotes respected, nothing expanded)' -r
complete -c bg-ship -l log-file -d 'Log file for the app\'s stdout and stderr, appended to; relative to DIR [default: app-PORT.log]' -r
complete -c bg-ship -l start-cmd -d 'Shell command to start the app instead of java, with {port} {artifact} {profile} {java_opts} {deploy_path} filled in, each quoted' -r
complete -c bg-ship -l env -d 'Environment variable for the app; repeatable' -r
complete -c bg-ship -l keep -d 'Keep this many artifacts in DIR (this one included); older ones go unless a running process uses them' -r
complete -c bg-ship -l java -d 'The java to run on the host' -r
complete -c bg-ship -l app-version -d 'The version being deployed, recorded in DIR/app-PORT.json for bg-status (gradle-version\'s `--format env` sets BG_VERSION)' -r
complete -c bg-ship -l settle -d 'How long the started process must stay alive to count as started' -r
complete -c bg-ship -l lock-timeout -d 'How long to wait for another run holding the same lock before exiting 5' -r
complete -c bg-ship -l lock-dir -d 'Directory of the lock files on the host' -r
complete -c bg-ship -l host -d 'Act on this host over SSH instead of the local machine' -r
complete -c bg-ship -l ssh-user -d 'SSH login name [default: the user in --host, else $USER]' -r
complete -c bg-ship -l ssh-port -d 'SSH port (a :PORT in --host wins) [default: Port in ssh_config, else 22]' -r
complete -c bg-ship -l identity -d 'Private key (its passphrase in BG_SSH_PASSPHRASE) [default: ssh-agent, then ~/.ssh/id_ed25519, id_ecdsa, id_rsa]' -r -F
complete -c bg-ship -l known-hosts -d 'Host keys to trust [default: ~/.ssh/known_hosts]' -r -F
complete -c bg-ship -l host-key-check -d 'Unknown or changed host keys: refuse (strict), add unknown ones (accept-new), or do not check (off) [default: StrictHostKeyChecking in ssh_config, else strict]' -r -f -a "strict\t'An unknown or changed key is refused'
accept-new\t'An unknown key is added to the file; a changed one is refused'
off\t'No check at all (a warning says so)'"
complete -c bg-ship -l connect-timeout -d 'Limit for the TCP connect and the SSH handshake [default: ConnectTimeout in ssh_config, else 10s]' -r
complete -c bg-ship -l ssh-config -d 'OpenSSH client configuration to read (Host, HostName, User, Port, IdentityFile, ProxyJump...) [default: ~/.ssh/config]' -r -F
complete -c bg-ship -l ssh-client -d 'How to reach the host: the built-in client (ssh2), or the system\'s `ssh` (openssh), which shares one connection across the stages of a pipeline and knows all of OpenSSH\'s options' -r -f -a "ssh2\t'libssh2, built in: needs nothing on the agent (the static build\'s choice)'
openssh\t'The system\'s `ssh`, with a shared connection (ControlMaster)'"
complete -c bg-ship -l ssh-persist -d 'openssh client: how long its shared connection stays open after the last use (ControlPersist)' -r
complete -c bg-ship -l format -d 'Result format on stdout: the value alone, one JSON object, or BG_KEY=value lines' -r -f -a "text\t'The one value a shell wants, or one human line'
json\t'One JSON object on one line'
env\t'`BG_KEY=value` lines, shell-safe'"
complete -c bg-ship -l no-start -d 'Upload only; do not start anything'
complete -c bg-ship -l dry-run -d 'Show what would be sent and started; change nothing'
complete -c bg-ship -l no-ssh-config -d 'Read no ssh_config file, not even --ssh-config\'s: only the flags and BG_* variables count'
complete -c bg-ship -l sudo -d 'Run privileged commands as `sudo -n ...` (BG_SUDO=1)'
complete -c bg-ship -s v -l verbose -d 'Say more on stderr (-vv for even more)'
complete -c bg-ship -s q -l quiet -d 'Say less on stderr (-qq: errors only)'
complete -c bg-ship -s h -l help -d 'Print help (see more with \'--help\')'
complete -c bg-ship -s V -l version -d 'Print version'
