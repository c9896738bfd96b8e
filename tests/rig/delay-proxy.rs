//! `delay-proxy RTT_MS TARGET_PORT`: the test rig's slow link
//! ([`DelayProxy`]) as a program, for the benchmarks. Listens on a free port
//! of 127.0.0.1, prints it on stdout, and forwards every connection to
//! 127.0.0.1:TARGET_PORT, each direction delayed by half of RTT_MS. Runs
//! until it is killed or the process that started it exits.

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use bg_deploy_tests::DelayProxy;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (rtt_ms, target) = match args.as_slice() {
        [rtt, target] => match (rtt.parse::<u64>(), target.parse::<u16>()) {
            (Ok(rtt), Ok(target)) if target != 0 => (rtt, target),
            _ => return usage(),
        },
        _ => return usage(),
    };
    // A benchmark killed before its cleanup ran leaves no proxy behind.
    // SAFETY: prctl with these arguments only sets a signal for this process.
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) };
    // SAFETY: getppid has no preconditions.
    if unsafe { libc::getppid() } == 1 {
        return ExitCode::FAILURE;
    }
    let proxy = match DelayProxy::bind(0, target, Duration::from_millis(rtt_ms)) {
        Ok(proxy) => proxy,
        Err(e) => {
            eprintln!("delay-proxy: cannot listen on 127.0.0.1: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut stdout = std::io::stdout();
    if writeln!(stdout, "{}", proxy.port)
        .and_then(|()| stdout.flush())
        .is_err()
    {
        return ExitCode::FAILURE;
    }
    loop {
        std::thread::park();
    }
}

fn usage() -> ExitCode {
    eprintln!(
        "usage: delay-proxy RTT_MS TARGET_PORT (forwards 127.0.0.1:PORT it prints to 127.0.0.1:TARGET_PORT)"
    );
    ExitCode::from(2)
}
