use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A port nothing listens on right now, never the same twice in one test
/// process. The kernel may hand a port it just gave back out again; two
/// tests running side by side then both started an app on it, and one
/// test's "green" port answered with the other's "blue" app. Another
/// process may still take it before we do: servers that bind it retry with
/// a new one.
pub fn free_port() -> u16 {
    static GIVEN: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());
    let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
    loop {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        if given.insert(port) {
            return port;
        }
    }
}

/// Waits until something accepts on 127.0.0.1:port; false after `timeout`.
pub fn wait_for_port(port: u16, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_millis(200))
            .is_ok()
        {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

/// `GET path` with `Connection: close`; `None` when the connection failed or
/// broke before a whole answer came.
pub fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    http_get_at([127, 0, 0, 1].into(), port, path)
}

/// [`http_get`] on another address: an app host's.
pub fn http_get_at(address: std::net::IpAddr, port: u16, path: &str) -> Option<(u16, String)> {
    let mut stream =
        TcpStream::connect_timeout(&(address, port).into(), Duration::from_secs(2)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response).ok()?;
    let text = String::from_utf8_lossy(&response);
    let (head, body) = text.split_once("\r\n\r\n")?;
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    let chunked = head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked");
    let body = if chunked {
        dechunk(body)?
    } else {
        body.to_string()
    };
    Some((status, body))
}

fn dechunk(mut body: &str) -> Option<String> {
    let mut out = String::new();
    loop {
        let (size, rest) = body.split_once("\r\n")?;
        let size = usize::from_str_radix(size.trim(), 16).ok()?;
        if size == 0 {
            return Some(out);
        }
        out.push_str(rest.get(..size)?);
        body = rest.get(size + 2..)?;
    }
}

/// A port that refuses connections for as long as the guard lives: a bound
/// TCP socket that never listens. Nobody else can bind it meanwhile, so
/// unlike a port from [`free_port`], no parallel test can start a server there.
pub struct ClosedPort {
    pub port: u16,
    fd: i32,
}

impl ClosedPort {
    pub fn new() -> ClosedPort {
        // SAFETY: plain socket calls on a descriptor we own and close on drop.
        unsafe {
            let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0);
            assert!(fd >= 0);
            let mut addr: libc::sockaddr_in = std::mem::zeroed();
            addr.sin_family = libc::AF_INET as libc::sa_family_t;
            addr.sin_addr.s_addr = u32::from_ne_bytes([127, 0, 0, 1]);
            let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
            assert_eq!(
                libc::bind(fd, &addr as *const _ as *const libc::sockaddr, len),
                0
            );
            let mut bound: libc::sockaddr_in = std::mem::zeroed();
            let mut bound_len = len;
            assert_eq!(
                libc::getsockname(
                    fd,
                    &mut bound as *mut _ as *mut libc::sockaddr,
                    &mut bound_len
                ),
                0
            );
            ClosedPort {
                port: u16::from_be(bound.sin_port),
                fd,
            }
        }
    }
}

impl Default for ClosedPort {
    fn default() -> Self {
        ClosedPort::new()
    }
}

impl Drop for ClosedPort {
    fn drop(&mut self) {
        unsafe { libc::close(self.fd) };
    }
}
