//! A slow link on loopback: a TCP forwarder that delays what it carries by
//! half a round trip in each direction. A deploy agent is often tens of
//! milliseconds away from its hosts, and every SSH round trip and every
//! login counts there; the kernel's own delay (tc netem) needs privileges
//! and a module we cannot count on, so the rig and the benchmarks put this
//! in front of sshd or the app instead (benches/deploy-wan.sh).
//!
//! Each accepted connection gets one reader and one writer per direction,
//! joined by a channel of (deadline, bytes): a chunk read at `t` is written
//! at `t + rtt / 2`, in order, as it was read (no coalescing). An EOF is
//! delayed the same way and passed on as `shutdown(Write)`, so ssh and scp
//! sessions end as they would on the real link; a reset or a failed write
//! shuts both sockets down. A connection's sockets close when both
//! directions have ended.
//!
//! Loopback's own `connect` returns at once, where a real one takes a round
//! trip, and the server accepts half a round trip later still, when the
//! handshake's last ACK arrives. So the proxy dials its target one and a half
//! round trips after it accepted: what the client sent meanwhile waits, and
//! the server's first bytes reach the client two round trips after its
//! `connect`, as on the real link.
//!
//! Bandwidth is not limited: what the benchmarks move is small, and latency
//! is what they measure.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How much one read takes at most.
const CHUNK: usize = 64 * 1024;
/// Chunks in flight per direction before the reader waits (16 MiB), as a
/// TCP window would make the sender wait.
const QUEUE: usize = 256;
/// How long the proxy tries to reach its target.
const DIAL_TIMEOUT: Duration = Duration::from_secs(10);

/// A listening port on 127.0.0.1 that forwards each connection to
/// `127.0.0.1:target` over a link with the given round trip. Dropping it
/// stops listening and shuts down the connections still open.
pub struct DelayProxy {
    /// Where to connect instead of the target.
    pub port: u16,
    /// The address it listens on.
    pub address: std::net::IpAddr,
    stop: Arc<AtomicBool>,
    open: Registry,
    accept: Option<JoinHandle<()>>,
}

/// The two sockets of each open connection, to shut down on drop.
type Registry = Arc<Mutex<HashMap<u64, (TcpStream, TcpStream)>>>;

enum Chunk {
    Data(Instant, Vec<u8>),
    Eof(Instant),
    /// The read failed: the connection was reset, or shut down under us.
    Broken,
}

impl DelayProxy {
    /// Starts the proxy on a free port; panics when it cannot listen.
    pub fn start(target: u16, rtt: Duration) -> DelayProxy {
        DelayProxy::bind(0, target, rtt).expect("the delay proxy cannot listen on 127.0.0.1")
    }

    /// Starts the proxy on `127.0.0.1:port` (0: a free one).
    pub fn bind(port: u16, target: u16, rtt: Duration) -> io::Result<DelayProxy> {
        DelayProxy::between(
            SocketAddr::from(([127, 0, 0, 1], port)),
            SocketAddr::from(([127, 0, 0, 1], target)),
            rtt,
        )
    }

    /// Starts the proxy on `listen` (port 0: a free one), forwarding to
    /// `target`. The proxy's threads stay in the network namespace of the
    /// thread that calls this: an app host's, for a slow link to it.
    pub fn between(
        listen: SocketAddr,
        target: SocketAddr,
        rtt: Duration,
    ) -> io::Result<DelayProxy> {
        let listener = TcpListener::bind(listen)?;
        let port = listener.local_addr()?.port();
        let stop = Arc::new(AtomicBool::new(false));
        let open: Registry = Arc::default();
        let accept = {
            let (stop, open) = (Arc::clone(&stop), Arc::clone(&open));
            std::thread::Builder::new()
                .name(format!("delay-proxy-{port}"))
                .spawn(move || accept_loop(listener, target, rtt, &stop, &open))?
        };
        Ok(DelayProxy {
            port,
            address: listen.ip(),
            stop,
            open,
            accept: Some(accept),
        })
    }

    /// Connections dialed through and not yet ended both ways.
    pub fn connections(&self) -> usize {
        self.open.lock().unwrap().len()
    }
}

impl Drop for DelayProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // accept() blocks: one last connection wakes it to see the flag.
        let _ = TcpStream::connect((self.address, self.port));
        if let Some(accept) = self.accept.take() {
            let _ = accept.join();
        }
        for (client, server) in self.open.lock().unwrap().values() {
            let _ = client.shutdown(Shutdown::Both);
            let _ = server.shutdown(Shutdown::Both);
        }
    }
}

fn accept_loop(
    listener: TcpListener,
    target: SocketAddr,
    rtt: Duration,
    stop: &Arc<AtomicBool>,
    open: &Registry,
) {
    let ids = AtomicU64::new(0);
    for client in listener.incoming() {
        if stop.load(Ordering::SeqCst) {
            return;
        }
        match client {
            Ok(client) => {
                let id = ids.fetch_add(1, Ordering::Relaxed);
                let (stop, open) = (Arc::clone(stop), Arc::clone(open));
                let _ = std::thread::Builder::new()
                    .name(format!("delay-proxy-conn-{id}"))
                    .spawn(move || connection(id, client, target, rtt, &stop, &open));
            }
            // Out of descriptors, say: let connections finish, then go on.
            Err(_) => std::thread::sleep(Duration::from_millis(10)),
        }
    }
}

/// One connection, from accept to both directions' end. This thread
/// becomes the writer towards the target.
fn connection(
    id: u64,
    client: TcpStream,
    target: SocketAddr,
    rtt: Duration,
    stop: &AtomicBool,
    open: &Registry,
) {
    let accepted = Instant::now();
    let half = rtt / 2;
    let _ = client.set_nodelay(true);
    let (up_tx, up) = sync_channel(QUEUE);
    if spawn_reader(&client, up_tx, half).is_err() {
        return;
    }
    sleep_until(accepted + rtt + half);
    let dialed = if stop.load(Ordering::SeqCst) {
        Err(io::ErrorKind::ConnectionAborted.into())
    } else {
        TcpStream::connect_timeout(&target, DIAL_TIMEOUT)
    };
    let server = match dialed {
        Ok(server) => server,
        Err(_) => {
            // The client sees the connection closed, as when a server refuses.
            let _ = client.shutdown(Shutdown::Both);
            return;
        }
    };
    let _ = server.set_nodelay(true);
    let registered = match (client.try_clone(), server.try_clone()) {
        (Ok(c), Ok(s)) => {
            open.lock().unwrap().insert(id, (c, s));
            Registered(id, Arc::clone(open))
        }
        _ => {
            let _ = client.shutdown(Shutdown::Both);
            return;
        }
    };
    // Dropped meanwhile: the drop either saw this connection in the
    // registry, or we see its flag now.
    if stop.load(Ordering::SeqCst) {
        let _ = client.shutdown(Shutdown::Both);
        let _ = server.shutdown(Shutdown::Both);
    }
    let (down_tx, down) = sync_channel(QUEUE);
    let down_writer = (|| -> io::Result<JoinHandle<()>> {
        spawn_reader(&server, down_tx, half)?;
        let (from, to) = (server.try_clone()?, client.try_clone()?);
        std::thread::Builder::new()
            .name(format!("delay-proxy-down-{id}"))
            .spawn(move || write_delayed(down, &from, &to))
    })();
    match down_writer {
        Ok(down_writer) => {
            write_delayed(up, &client, &server);
            let _ = down_writer.join();
        }
        Err(_) => {
            let _ = client.shutdown(Shutdown::Both);
            let _ = server.shutdown(Shutdown::Both);
        }
    }
    drop(registered);
}

/// Removes a connection from the registry when both directions are done.
struct Registered(u64, Registry);

impl Drop for Registered {
    fn drop(&mut self) {
        self.1.lock().unwrap().remove(&self.0);
    }
}

/// Reads `from` until EOF or an error, stamping each chunk with the time it
/// is due at the other end.
fn spawn_reader(from: &TcpStream, to: SyncSender<Chunk>, delay: Duration) -> io::Result<()> {
    let mut from = from.try_clone()?;
    std::thread::Builder::new()
        .name("delay-proxy-read".into())
        .spawn(move || {
            let mut buf = vec![0; CHUNK];
            loop {
                let chunk = match from.read(&mut buf) {
                    Ok(0) => Chunk::Eof(Instant::now() + delay),
                    Ok(n) => Chunk::Data(Instant::now() + delay, buf[..n].to_vec()),
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(_) => Chunk::Broken,
                };
                let last = !matches!(chunk, Chunk::Data(..));
                if to.send(chunk).is_err() || last {
                    return;
                }
            }
        })?;
    Ok(())
}

/// Writes each chunk to `to` when it is due; passes EOF on as a half-close.
/// Anything broken, either way, shuts both sockets down, which ends the
/// other direction too.
fn write_delayed(chunks: Receiver<Chunk>, from: &TcpStream, mut to: &TcpStream) {
    loop {
        match chunks.recv() {
            Ok(Chunk::Data(due, bytes)) => {
                sleep_until(due);
                if to.write_all(&bytes).is_err() {
                    break;
                }
            }
            Ok(Chunk::Eof(due)) => {
                sleep_until(due);
                let _ = to.shutdown(Shutdown::Write);
                return;
            }
            Ok(Chunk::Broken) | Err(_) => break,
        }
    }
    let _ = from.shutdown(Shutdown::Both);
    let _ = to.shutdown(Shutdown::Both);
}

fn sleep_until(due: Instant) {
    let now = Instant::now();
    if due > now {
        std::thread::sleep(due - now);
    }
}
