//! What a flow's guest can reach besides our host functions: by default nothing.
//!
//! No environment, no arguments, no network, no filesystem; the WASI clocks read zero and
//! WASI randomness is a fixed sequence, so the only time and randomness a flow sees come
//! through `host.now` and `host.random` (which the journal can replay). A flow may be
//! granted directories, each preopened through cap-std (wasmtime-wasi's filesystem), so
//! neither `..` nor a symlink can lead outside it; read-only unless the grant says `rw`.
//! Guest stdout and stderr become log lines naming the instance's flow, id and pool.

use std::collections::VecDeque;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use tokio::io::AsyncWrite;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamError};
use wasmtime_wasi::{Deterministic, FsPerms, HostMonotonicClock, HostWallClock, WasiCtx};

use crate::model::DirGrant;

/// Longest guest output line logged; the rest of a longer line is cut.
const MAX_LINE: usize = 4096;
/// Guest output logged per stream and instance; beyond it output is dropped (once noted).
const MAX_LOGGED: u64 = 1 << 20;
/// Lines of stderr kept to explain a trap.
const TAIL_LINES: usize = 3;

/// Whose output a [`GuestOutput`] logs: every line names the flow, the instance and its pool.
#[derive(Debug, Default)]
pub struct Owner {
    /// Flow name.
    pub flow: String,
    /// Instance id.
    pub id: String,
    /// Pool name.
    pub pool: String,
}

/// A clock stopped at zero: the ambient clock a sandboxed guest gets.
struct StoppedClock;

impl HostWallClock for StoppedClock {
    fn resolution(&self) -> Duration {
        Duration::from_secs(1)
    }
    fn now(&self) -> Duration {
        Duration::ZERO
    }
}

impl HostMonotonicClock for StoppedClock {
    fn resolution(&self) -> u64 {
        1_000_000_000
    }
    fn now(&self) -> u64 {
        0
    }
}

/// Build an instance's WASI context: the grants, and nothing else ambient.
pub fn wasi_ctx(
    grants: &[DirGrant],
    stdout: GuestOutput,
    stderr: GuestOutput,
) -> Result<WasiCtx, String> {
    let mut builder = WasiCtx::builder();
    builder
        .stdout(stdout)
        .stderr(stderr)
        .wall_clock(StoppedClock)
        .monotonic_clock(StoppedClock)
        .secure_random(Deterministic::new(vec![0]))
        .insecure_random(Deterministic::new(vec![0]))
        .insecure_random_seed(0)
        .allow_tcp(false)
        .allow_udp(false)
        .allow_ip_name_lookup(false)
        .socket_addr_check(|_, _| Box::pin(async { false }));
    for grant in grants {
        let perms = if grant.write {
            FsPerms::ReadWrite
        } else {
            FsPerms::ReadOnly
        };
        builder
            .preopened_dir(&grant.host, &grant.guest, perms)
            .map_err(|e| {
                format!(
                    "cannot open granted directory {}: {e}",
                    grant.host.display()
                )
            })?;
    }
    Ok(builder.build())
}

/// Which stream a [`GuestOutput`] carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    /// Guest stdout: logged at info.
    Stdout,
    /// Guest stderr: logged at warn, and its last lines kept to explain a trap.
    Stderr,
}

#[derive(Debug)]
struct Lines {
    stream: Stream,
    owner: Arc<Owner>,
    partial: Vec<u8>,
    tail: VecDeque<String>,
    logged: u64,
    dropped: bool,
}

impl Lines {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            if b == b'\n' {
                self.emit();
            } else if self.partial.len() < MAX_LINE {
                self.partial.push(b);
            }
        }
    }

    fn emit(&mut self) {
        let line = String::from_utf8_lossy(&self.partial).into_owned();
        self.partial.clear();
        if self.stream == Stream::Stderr {
            if self.tail.len() == TAIL_LINES {
                self.tail.pop_front();
            }
            self.tail.push_back(line.clone());
        }
        if line.trim().is_empty() {
            return;
        }
        if self.logged >= MAX_LOGGED {
            if !self.dropped {
                self.dropped = true;
                let o = &self.owner;
                tracing::warn!(target: "sluice::guest", flow = %o.flow, id = %o.id, pool = %o.pool, "guest {:?} passed {MAX_LOGGED} bytes; further output is dropped", self.stream);
            }
            return;
        }
        self.logged += line.len() as u64 + 1;
        let o = &self.owner;
        match self.stream {
            Stream::Stdout => {
                tracing::info!(target: "sluice::guest", flow = %o.flow, id = %o.id, pool = %o.pool, stream = "stdout", "{line}")
            }
            Stream::Stderr => {
                tracing::warn!(target: "sluice::guest", flow = %o.flow, id = %o.id, pool = %o.pool, stream = "stderr", "{line}")
            }
        }
    }
}

/// A guest's stdout or stderr, turned into log lines. Never fails, never blocks.
#[derive(Debug, Clone)]
pub struct GuestOutput(Arc<Mutex<Lines>>);

impl GuestOutput {
    /// An empty stream of kind `stream`, owned by nobody in particular (a test host).
    pub fn new(stream: Stream) -> Self {
        Self::of(stream, Arc::default())
    }

    /// An empty stream of kind `stream` of the instance `owner` names.
    pub fn of(stream: Stream, owner: Arc<Owner>) -> Self {
        GuestOutput(Arc::new(Mutex::new(Lines {
            stream,
            owner,
            partial: Vec::new(),
            tail: VecDeque::new(),
            logged: 0,
            dropped: false,
        })))
    }

    fn lines(&self) -> std::sync::MutexGuard<'_, Lines> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self, bytes: &[u8]) {
        self.lines().write(bytes);
    }

    /// The last lines written (an unfinished one included), joined by spaces.
    pub fn tail(&self) -> Option<String> {
        let lines = self.lines();
        let partial = String::from_utf8_lossy(&lines.partial).into_owned();
        let all: Vec<&str> = lines
            .tail
            .iter()
            .map(String::as_str)
            .chain(std::iter::once(partial.as_str()))
            .map(str::trim)
            // Rust's panic hook ends with a hint about RUST_BACKTRACE that explains nothing here.
            .filter(|l| !l.is_empty() && !l.starts_with("note: run with `RUST_BACKTRACE"))
            .collect();
        (!all.is_empty()).then(|| all.join(" "))
    }
}

impl IsTerminal for GuestOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for GuestOutput {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }
    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for GuestOutput {
    async fn ready(&mut self) {}
}

impl OutputStream for GuestOutput {
    fn write(&mut self, bytes: Bytes) -> Result<(), StreamError> {
        GuestOutput::write(self, &bytes);
        Ok(())
    }
    fn flush(&mut self) -> Result<(), StreamError> {
        Ok(())
    }
    fn check_write(&mut self) -> Result<usize, StreamError> {
        Ok(64 << 10)
    }
}

impl AsyncWrite for GuestOutput {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        GuestOutput::write(&self, buf);
        Poll::Ready(Ok(buf.len()))
    }
    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grants_parse_modes_and_refuse_bad_ones() {
        let base = std::env::temp_dir();
        let dir = tempfile::tempdir_in(&base).unwrap();
        let name = dir.path().file_name().unwrap().to_str().unwrap();
        let g = DirGrant::parse("/in", &format!("{name}:ro"), &base).unwrap();
        assert!(!g.write && g.host == dir.path());
        assert!(
            DirGrant::parse("/out", &format!("{name}:rw"), &base)
                .unwrap()
                .write
        );
        assert!(!DirGrant::parse("/in", name, &base).unwrap().write);
        assert!(
            DirGrant::parse("in", name, &base)
                .unwrap_err()
                .contains("must be absolute")
        );
        assert!(
            DirGrant::parse("/in", &format!("{name}:rx"), &base)
                .unwrap_err()
                .contains("unknown mode `rx`")
        );
        assert!(
            DirGrant::parse("/in", "no/such/dir:ro", &base)
                .unwrap_err()
                .contains("is not a directory")
        );
    }

    #[test]
    fn output_lines_keep_a_tail_and_cut_long_lines() {
        let out = GuestOutput::new(Stream::Stderr);
        out.write(b"one\ntwo\nthree\nfour\nnote: run with `RUST_BACKTRACE=1` for more\npart");
        assert_eq!(out.tail().as_deref(), Some("three four part"));
        let long = GuestOutput::new(Stream::Stdout);
        long.write(&vec![b'x'; MAX_LINE * 2]);
        assert_eq!(long.lines().partial.len(), MAX_LINE);
    }
}
