//! A TCP relay on 127.0.0.1 port 0 in front of a server that may restart on another port,
//! be made unreachable, or be cut off as by a network partition: what one node's config
//! names as another node's (or the database's) address in the tests.

use std::io::{Read, Write as _};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// Forwards each connection to the current target; with none, closes it at once.
pub struct Relay {
    /// The port it listens on.
    pub port: u16,
    target: Arc<Mutex<Option<String>>>,
    cut: Arc<AtomicBool>,
}

impl Relay {
    /// A relay to `addr` (`host:port`).
    pub fn to(addr: &str) -> Self {
        let relay = Relay::new();
        relay.point_to(Some(addr));
        relay
    }

    /// A relay with no target yet.
    pub fn new() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("a relay port");
        let port = listener.local_addr().expect("its address").port();
        let target: Arc<Mutex<Option<String>>> = Arc::default();
        let cut = Arc::new(AtomicBool::new(false));
        let (current, partitioned) = (target.clone(), cut.clone());
        std::thread::spawn(move || {
            for client in listener.incoming().map_while(Result::ok) {
                if partitioned.load(Ordering::Acquire) {
                    std::mem::forget(client); // accepted, never answered
                    continue;
                }
                let to = current.lock().unwrap_or_else(|p| p.into_inner()).clone();
                let Some(Ok(server)) = to.map(TcpStream::connect) else {
                    drop(client); // down: the connection closes unanswered
                    continue;
                };
                let (Ok(c2), Ok(s2)) = (client.try_clone(), server.try_clone()) else {
                    continue;
                };
                for (mut from, mut to) in [(client, s2), (server, c2)] {
                    let partitioned = partitioned.clone();
                    std::thread::spawn(move || {
                        let mut buf = [0u8; 16 * 1024];
                        loop {
                            let n = match from.read(&mut buf) {
                                Ok(0) | Err(_) => break,
                                Ok(n) => n,
                            };
                            if partitioned.load(Ordering::Acquire) {
                                // Partitioned: hold everything, forever.
                                std::mem::forget(from);
                                std::mem::forget(to);
                                return;
                            }
                            if to.write_all(&buf[..n]).is_err() {
                                break;
                            }
                        }
                        let _ = to.shutdown(std::net::Shutdown::Both);
                    });
                }
            }
        });
        Relay { port, target, cut }
    }

    /// From now on no byte passes either way and connections stay open, as in a network
    /// partition (not a reset).
    pub fn cut(&self) {
        self.cut.store(true, Ordering::Release);
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Forward new connections to `url` (`http://host:port` or `host:port`), or to nothing.
    pub fn point_to(&self, url: Option<&str>) {
        let addr = url.map(|u| {
            u.trim_start_matches("http://")
                .trim_end_matches('/')
                .to_string()
        });
        *self.target.lock().unwrap_or_else(|p| p.into_inner()) = addr;
    }
}
