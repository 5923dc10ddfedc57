//! A TCP relay on 127.0.0.1 port 0 in front of a server that may restart on another port,
//! or be made unreachable: what one node's config names as another's URL in the tests.

use std::io::{Read, Write as _};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

/// Forwards each connection to the current target; with none, closes it at once.
pub struct Relay {
    /// The port it listens on.
    pub port: u16,
    target: Arc<Mutex<Option<String>>>,
}

impl Relay {
    /// A relay with no target yet.
    pub fn new() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("a relay port");
        let port = listener.local_addr().expect("its address").port();
        let target: Arc<Mutex<Option<String>>> = Arc::default();
        let current = target.clone();
        std::thread::spawn(move || {
            for client in listener.incoming().map_while(Result::ok) {
                let to = current.lock().unwrap_or_else(|p| p.into_inner()).clone();
                let Some(Ok(server)) = to.map(TcpStream::connect) else {
                    drop(client); // down: the connection closes unanswered
                    continue;
                };
                let (Ok(c2), Ok(s2)) = (client.try_clone(), server.try_clone()) else {
                    continue;
                };
                for (mut from, mut to) in [(client, s2), (server, c2)] {
                    std::thread::spawn(move || {
                        let mut buf = [0u8; 16 * 1024];
                        loop {
                            let n = match from.read(&mut buf) {
                                Ok(0) | Err(_) => break,
                                Ok(n) => n,
                            };
                            if to.write_all(&buf[..n]).is_err() {
                                break;
                            }
                        }
                        let _ = to.shutdown(std::net::Shutdown::Both);
                    });
                }
            }
        });
        Relay { port, target }
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Forward new connections to `url` (`http://host:port`), or to nothing.
    pub fn point_to(&self, url: Option<&str>) {
        let addr = url.map(|u| {
            u.trim_start_matches("http://")
                .trim_end_matches('/')
                .to_string()
        });
        *self.target.lock().unwrap_or_else(|p| p.into_inner()) = addr;
    }
}
