complete -c bg-stop-port -l port -d 'The port to free' -r
complete -c bg-stop-port -l protect-port -d 'Never stop this port (the active one): asking to is exit 3, nothing signalled. Repeatable; an empty value protects nothing (a first deploy has no active port)' -r
complete -c bg-stop-port -l signal -d 'First signal: TERM, INT, HUP, QUIT, USR1, USR2 or KILL (a SIG prefix or number is fine)' -r
complete -c bg-stop-port -l grace -d 'How long to wait after the first signal before sending KILL; longer than --timeout is exit 2 [default: 30s, or --timeout when that is shorter]' -r
complete -c bg-stop-port -l timeout -d 'How long in all before giving up with exit 1 (the port still busy)' -r
complete -c bg-stop-port -l deploy-path -d 'The app\'s directory, as bg-ship\'s --deploy-path: once the port is free, the pid file there (app-PORT.pid) is removed when its process is gone, with bg-ship\'s record of the start beside it (app-PORT.json)' -r
complete -c bg-stop-port -l lock-timeout -d 'How long to wait for another run holding the same lock before exiting 5' -r
complete -c bg-stop-port -l lock-dir -d 'Directory of the lock files on the host' -r
complete -c bg-stop-port -l host -d 'Act on this host over SSH instead of the local machine' -r
complete -c bg-stop-port -l ssh-user -d 'SSH login name [default: the user in --host, else $USER]' -r
complete -c bg-stop-port -l ssh-port -d 'SSH port (a :PORT in --host wins) [default: Port in ssh_config, else 22]' -r
complete -c bg-stop-port -l identity -d 'Private key (its passphrase in BG_SSH_PASSPHRASE) [default: ssh-agent, then ~/.ssh/id_ed25519, id_ecdsa, id_rsa]' -r -F
complete -c bg-stop-port -l known-hosts -d 'Host keys to trust [default: ~/.ssh/known_hosts]' -r -F
complete -c bg-stop-port -l host-key-check -d 'Unknown or changed host keys: refuse (strict), add unknown ones (accept-new), or do not check (off) [default: StrictHostKeyChecking in ssh_config, else strict]' -r -f -a "strict\t'An unknown or changed key is refused'
accept-new\t'An unknown key is added to the file; a changed one is refused'
off\t'No check at all (a warning says so)'"
complete -c bg-stop-port -l connect-timeout -d 'Limit for the TCP connect and the SSH handshake [default: ConnectTimeout in ssh_config, else 10s]' -r
complete -c bg-stop-port -l ssh-config -d 'OpenSSH client configuration to read (Host, HostName, User, Port, IdentityFile, ProxyJump...) [default: ~/.ssh/config]' -r -F
complete -c bg-stop-port -l ssh-client -d 'How to reach the host: the built-in client (ssh2), or the system\'s `ssh` (openssh), which shares one connection across the stages of a pipeline and knows all of OpenSSH\'s options' -r -f -a "ssh2\t'libssh2, built in: needs nothing on the agent (the static build\'s choice)'
openssh\t'The system\'s `ssh`, with a shared connection (ControlMaster)'"
complete -c bg-stop-port -l ssh-persist -d 'openssh client: how long its shared connection stays open after the last use (ControlPersist)' -r
complete -c bg-stop-port -l format -d 'Result format on stdout: the value alone, one JSON object, or BG_KEY=value lines' -r -f -a "text\t'The one value a shell wants, or one human line'
json\t'One JSON object on one line'
env\t'`BG_KEY=value` lines, shell-safe'"
complete -c bg-stop-port -l dry-run -d 'Show what would be stopped; signal nothing'
complete -c bg-stop-port -l no-ssh-config -d 'Read no ssh_config file, not even --ssh-config\'s: only the flags and BG_* variables count'
complete -c bg-stop-port -l sudo -d 'Run privileged commands as `sudo -n ...` (BG_SUDO=1)'
complete -c bg-stop-port -s v -l verbose -d 'Say more on stderr (-vv for even more)'
complete -c bg-stop-port -s q -l quiet -d 'Say less on stderr (-qq: errors only)'
complete -c bg-stop-port -s h -l help -d 'Print help (see more with \'--help\')'
complete -c bg-stop-port -s V -l version -d 'Print version'
