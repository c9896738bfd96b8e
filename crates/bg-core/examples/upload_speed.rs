//! Times one `Host::upload` over SSH: `upload_speed USER@HOST:PORT KEY KNOWN_HOSTS FILE REMOTE`.
use std::time::Instant;

use bg_core::host::{Host, SshHost, SshOptions, Target};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let mut options = SshOptions::new(Target::parse(&args[1]).unwrap());
    options.identity = Some(args[2].clone().into());
    options.known_hosts = Some(args[3].clone().into());
    let t = Instant::now();
    let host = SshHost::connect(&options).unwrap();
    eprintln!("connect {:?}", t.elapsed());
    let t = Instant::now();
    host.run_ok(&bg_core::Cmd::new("true")).unwrap();
    eprintln!("exec true {:?}", t.elapsed());
    let t = Instant::now();
    host.upload(std::path::Path::new(&args[4]), &args[5], &mut |_| {})
        .unwrap();
    eprintln!("upload {:?}", t.elapsed());
}
