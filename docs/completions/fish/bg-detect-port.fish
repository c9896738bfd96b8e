complete -c bg-detect-port -l site -d 'Site name: the symlink layout\'s files are sites-available/NAME_PORT' -r
complete -c bg-detect-port -l blue-port -d 'The blue port (the target when nothing is active yet)' -r
complete -c bg-detect-port -l green-port -d 'The green port' -r
complete -c bg-detect-port -l sites-available -d 'Symlink layout: directory of the site files, one per port' -r
complete -c bg-detect-port -l sites-enabled -d 'Symlink layout: directory nginx includes, holding the one enabled link' -r
complete -c bg-detect-port -l upstream-file -d 'Managed layout: the include file holding `upstream NAME { ... }` and nothing else' -r
complete -c bg-detect-port -l upstream-name -d 'Managed layout: the upstream\'s name' -r
complete -c bg-detect-port -l lock-dir -d 'Where bg-switch keeps its lock and its "switch in progress" marker on the nginx host' -r
complete -c bg-detect-port -l host -d 'Act on this host over SSH instead of the local machine' -r
complete -c bg-detect-port -l ssh-user -d 'SSH login name [default: the user in --host, else $USER]' -r
complete -c bg-detect-port -l ssh-port -d 'SSH port (a :PORT in --host wins) [default: Port in ssh_config, else 22]' -r
complete -c bg-detect-port -l identity -d 'Private key (its passphrase in BG_SSH_PASSPHRASE) [default: ssh-agent, then ~/.ssh/id_ed25519, id_ecdsa, id_rsa]' -r -F
complete -c bg-detect-port -l known-hosts -d 'Host keys to trust [default: ~/.ssh/known_hosts]' -r -F
complete -c bg-detect-port -l host-key-check -d 'Unknown or changed host keys: refuse (strict), add unknown ones (accept-new), or do not check (off) [default: StrictHostKeyChecking in ssh_config, else strict]' -r -f -a "strict\t'An unknown or changed key is refused'
accept-new\t'An unknown key is added to the file; a changed one is refused'
off\t'No check at all (a warning says so)'"
complete -c bg-detect-port -l connect-timeout -d 'Limit for the TCP connect and the SSH handshake [default: ConnectTimeout in ssh_config, else 10s]' -r
complete -c bg-detect-port -l ssh-config -d 'OpenSSH client configuration to read (Host, HostName, User, Port, IdentityFile, ProxyJump...) [default: ~/.ssh/config]' -r -F
complete -c bg-detect-port -l ssh-client -d 'How to reach the host: the built-in client (ssh2), or the system\'s `ssh` (openssh), which shares one connection across the stages of a pipeline and knows all of OpenSSH\'s options' -r -f -a "ssh2\t'libssh2, built in: needs nothing on the agent (the static build\'s choice)'
openssh\t'The system\'s `ssh`, with a shared connection (ControlMaster)'"
complete -c bg-detect-port -l ssh-persist -d 'openssh client: how long its shared connection stays open after the last use (ControlPersist)' -r
complete -c bg-detect-port -l format -d 'Result format on stdout: the value alone, one JSON object, or BG_KEY=value lines' -r -f -a "text\t'The one value a shell wants, or one human line'
json\t'One JSON object on one line'
env\t'`BG_KEY=value` lines, shell-safe'"
complete -c bg-detect-port -l init -d 'Managed layout: no upstream file yet is the first deploy (target: the blue port); without it, a missing file is exit 3, as a mistyped --upstream-file would hand out the live port'
complete -c bg-detect-port -l no-ssh-config -d 'Read no ssh_config file, not even --ssh-config\'s: only the flags and BG_* variables count'
complete -c bg-detect-port -l sudo -d 'Run privileged commands as `sudo -n ...` (BG_SUDO=1)'
complete -c bg-detect-port -s v -l verbose -d 'Say more on stderr (-vv for even more)'
complete -c bg-detect-port -s q -l quiet -d 'Say less on stderr (-qq: errors only)'
complete -c bg-detect-port -s h -l help -d 'Print help (see more with \'--help\')'
complete -c bg-detect-port -s V -l version -d 'Print version'
