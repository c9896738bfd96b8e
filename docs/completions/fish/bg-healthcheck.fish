complete -c bg-healthcheck -l url -d 'The URL to probe, http[s]://HOST:PORT/PATH (e.g. http://10.0.0.5:8001/actuator/health)' -r
complete -c bg-healthcheck -l expect-status -d 'Statuses that count as healthy: a list or ranges, e.g. 200,204,300-399' -r
complete -c bg-healthcheck -l expect-body -d 'A regular expression the body must match, e.g. \'"status":"UP"\'' -r
complete -c bg-healthcheck -l interval -d 'Time between two probes' -r
complete -c bg-healthcheck -l timeout -d 'How long to wait for healthy in all' -r
complete -c bg-healthcheck -l request-timeout -d 'Limit for one request, connect to last byte' -r
complete -c bg-healthcheck -l successes -d 'Healthy answers needed in a row' -r
complete -c bg-healthcheck -l watch-pid -d 'Fail at once when this process dies (on --host, or here)' -r
complete -c bg-healthcheck -l log-file -d 'The app\'s log (on --host, or here): its last 50 lines are shown on failure' -r
complete -c bg-healthcheck -l cacert -d 'For https URLs: trust only the CA certificates in this PEM file, instead of the built-in roots (as curl\'s --cacert does) [default: Mozilla\'s roots, built into the binary]' -r -F
complete -c bg-healthcheck -l host -d 'Act on this host over SSH instead of the local machine' -r
complete -c bg-healthcheck -l ssh-user -d 'SSH login name [default: the user in --host, else $USER]' -r
complete -c bg-healthcheck -l ssh-port -d 'SSH port (a :PORT in --host wins) [default: Port in ssh_config, else 22]' -r
complete -c bg-healthcheck -l identity -d 'Private key (its passphrase in BG_SSH_PASSPHRASE) [default: ssh-agent, then ~/.ssh/id_ed25519, id_ecdsa, id_rsa]' -r -F
complete -c bg-healthcheck -l known-hosts -d 'Host keys to trust [default: ~/.ssh/known_hosts]' -r -F
complete -c bg-healthcheck -l host-key-check -d 'Unknown or changed host keys: refuse (strict), add unknown ones (accept-new), or do not check (off) [default: StrictHostKeyChecking in ssh_config, else strict]' -r -f -a "strict\t'An unknown or changed key is refused'
accept-new\t'An unknown key is added to the file; a changed one is refused'
off\t'No check at all (a warning says so)'"
complete -c bg-healthcheck -l connect-timeout -d 'Limit for the TCP connect and the SSH handshake [default: ConnectTimeout in ssh_config, else 10s]' -r
complete -c bg-healthcheck -l ssh-config -d 'OpenSSH client configuration to read (Host, HostName, User, Port, IdentityFile, ProxyJump...) [default: ~/.ssh/config]' -r -F
complete -c bg-healthcheck -l ssh-client -d 'How to reach the host: the built-in client (ssh2), or the system\'s `ssh` (openssh), which shares one connection across the stages of a pipeline and knows all of OpenSSH\'s options' -r -f -a "ssh2\t'libssh2, built in: needs nothing on the agent (the static build\'s choice)'
openssh\t'The system\'s `ssh`, with a shared connection (ControlMaster)'"
complete -c bg-healthcheck -l ssh-persist -d 'openssh client: how long its shared connection stays open after the last use (ControlPersist)' -r
complete -c bg-healthcheck -l format -d 'Result format on stdout: the value alone, one JSON object, or BG_KEY=value lines' -r -f -a "text\t'The one value a shell wants, or one human line'
json\t'One JSON object on one line'
env\t'`BG_KEY=value` lines, shell-safe'"
complete -c bg-healthcheck -l insecure -d 'For https URLs: do not verify the server\'s certificate at all (a warning says so on stderr)'
complete -c bg-healthcheck -l no-ssh-config -d 'Read no ssh_config file, not even --ssh-config\'s: only the flags and BG_* variables count'
complete -c bg-healthcheck -l sudo -d 'Run privileged commands as `sudo -n ...` (BG_SUDO=1)'
complete -c bg-healthcheck -s v -l verbose -d 'Say more on stderr (-vv for even more)'
complete -c bg-healthcheck -s q -l quiet -d 'Say less on stderr (-qq: errors only)'
complete -c bg-healthcheck -s h -l help -d 'Print help (see more with \'--help\')'
complete -c bg-healthcheck -s V -l version -d 'Print version'
