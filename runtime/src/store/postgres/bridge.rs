//! Connections to PostgreSQL, each owned by a thread of its own.
//!
//! The store trait is synchronous (the journal writer is a plain thread; reads come from
//! async tasks and block briefly, as SQLite's do). The `postgres` client runs a small
//! runtime of its own and cannot be used from inside a tokio task, so every call is sent
//! to one of a few connection threads and its answer awaited on a channel: any thread may
//! call, inside a runtime or not.

use std::collections::HashMap;
use std::ops::{Deref, DerefMut};
use std::sync::mpsc::{Receiver, Sender, SyncSender, channel, sync_channel};
use std::sync::{Arc, Mutex};

use postgres::{Client, GenericClient, NoTls, Statement};

use super::db;
use crate::store::StoreError;

/// A unit of work for one connection (`Err`: the database cannot be reached now).
type Job = Box<dyn FnOnce(Result<&mut Conn, StoreError>) + Send>;

/// One connection and the statements prepared on it: the hot statements are parsed once
/// per connection, not on every call (an unprepared query costs a second round trip).
pub(super) struct Conn {
    client: Client,
    prepared: Prepared,
}

/// Statements prepared on one connection, by their text.
#[derive(Default)]
pub(super) struct Prepared(HashMap<&'static str, Statement>);

impl Prepared {
    /// `sql` prepared on `client` (the connection these were prepared on, or a transaction
    /// of it), once.
    pub(super) fn get(
        &mut self,
        client: &mut impl GenericClient,
        sql: &'static str,
    ) -> Result<Statement, StoreError> {
        if let Some(statement) = self.0.get(sql) {
            return Ok(statement.clone());
        }
        let statement = client.prepare(sql).map_err(db)?;
        self.0.insert(sql, statement.clone());
        Ok(statement)
    }
}

impl Conn {
    /// The client and its prepared statements, borrowed apart (for a transaction).
    pub(super) fn split(&mut self) -> (&mut Client, &mut Prepared) {
        (&mut self.client, &mut self.prepared)
    }

    /// `sql` prepared on this connection, once.
    pub(super) fn prepared(&mut self, sql: &'static str) -> Result<Statement, StoreError> {
        let (client, prepared) = self.split();
        prepared.get(client, sql)
    }
}

impl Deref for Conn {
    type Target = Client;
    fn deref(&self) -> &Client {
        &self.client
    }
}

impl DerefMut for Conn {
    fn deref_mut(&mut self) -> &mut Client {
        &mut self.client
    }
}

/// A fixed set of connections, each on its own thread, shared by every caller.
pub(super) struct Bridge {
    jobs: Mutex<Sender<Job>>,
}

impl Bridge {
    /// Connect `size` clients to `url`; fails (with the server's reason) when the first
    /// cannot connect, so a node pointed at an unreachable database refuses to start.
    pub(super) fn connect(url: &str, size: usize) -> Result<Self, StoreError> {
        let (tx, rx) = channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        for n in 0..size.max(1) {
            let (rx, url) = (rx.clone(), url.to_string());
            let (ready, connected) = sync_channel::<Result<(), StoreError>>(1);
            // Connected on its own thread: the client may not be made inside a runtime.
            std::thread::Builder::new()
                .name(format!("sluice-pg-{n}"))
                .spawn(move || match connect(&url) {
                    Ok(client) => {
                        let _ = ready.send(Ok(()));
                        serve(&url, client, &rx);
                    }
                    Err(e) => {
                        let _ = ready.send(Err(e));
                    }
                })
                .map_err(|e| {
                    StoreError::Database(format!("cannot start a connection thread: {e}"))
                })?;
            connected.recv().map_err(|_| StoreError::Closed)??;
        }
        Ok(Bridge {
            jobs: Mutex::new(tx),
        })
    }

    /// Run `f` on a connection and return its result.
    pub(super) fn run<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Conn) -> Result<R, StoreError> + Send + 'static,
    ) -> Result<R, StoreError> {
        let (tx, rx): (SyncSender<Result<R, StoreError>>, _) = sync_channel(1);
        let job: Job = Box::new(move |client| {
            let _ = tx.send(client.and_then(f));
        });
        self.jobs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .send(job)
            .map_err(|_| StoreError::Closed)?;
        rx.recv().map_err(|_| StoreError::Closed)?
    }
}

/// One client to `url`, its errors named as the database's.
pub(super) fn connect(url: &str) -> Result<Client, StoreError> {
    let mut client = Client::connect(url, NoTls).map_err(|e| {
        StoreError::Database(format!(
            "cannot connect to PostgreSQL at {}: {e}",
            redacted(url)
        ))
    })?;
    // A node cut off mid-transaction must not keep its locks (its membership row's
    // included) until TCP notices: the server ends such a transaction after this long.
    // Sluice's transactions never idle: their statements follow each other at once.
    client
        .batch_execute("SET idle_in_transaction_session_timeout = '5s'")
        .map_err(db)?;
    Ok(client)
}

/// `url` without its password, for messages and logs.
pub(super) fn redacted(url: &str) -> String {
    crate::model::urls::without_password(url)
}

/// A connection thread: run jobs until every sender is gone. A broken connection is
/// replaced before the next job (the job that found it broken has reported its error);
/// while the database cannot be reached, jobs fail with the reason.
fn serve(url: &str, client: Client, jobs: &Mutex<Receiver<Job>>) {
    let fresh = |client| Conn {
        client,
        prepared: Prepared::default(),
    };
    let mut client = Some(fresh(client));
    loop {
        let job = {
            let rx = jobs.lock().unwrap_or_else(|p| p.into_inner());
            match rx.recv() {
                Ok(job) => job,
                Err(_) => return,
            }
        };
        if client.as_ref().is_none_or(|c| c.is_closed()) {
            client = match connect(url) {
                Ok(c) => Some(fresh(c)),
                Err(e) => {
                    tracing::warn!("{e}");
                    job(Err(e));
                    continue;
                }
            };
        }
        match client.as_mut() {
            Some(c) => job(Ok(c)),
            None => job(Err(StoreError::Closed)),
        }
    }
}
