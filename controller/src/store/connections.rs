//! The store's SQLite connections, opened once and held for the store's life: the one that
//! writes behind a queue (a fair mutex), the read-only ones handed out one per reader.
//!
//! Why not sqlx's pool: each statement runs on its connection's own thread, and every
//! hand-over to that thread and back costs a sleeping thread's wake-up on each side. The pool
//! adds a round trip of its own (a ping) each time a connection is given out and again each
//! time one comes back, so a single-statement write cost three hand-overs instead of one;
//! those hand-overs were most of the controller's processor time under load. A connection to
//! a file in this process cannot drop the way a network connection can, so the pings find
//! nothing; and what they also did, letting a rollback queued by a dropped transaction run
//! before the next user, the connection's own command queue already does in order.

use std::ops::{Deref, DerefMut};
use std::sync::Mutex;

use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{ConnectOptions, SqliteConnection};
use tokio::sync::{MutexGuard, Semaphore, SemaphorePermit};

/// The one connection that writes; users queue for it in arrival order.
#[derive(Debug)]
pub(super) struct Writer(tokio::sync::Mutex<SqliteConnection>);

impl Writer {
    pub(super) fn new(connection: SqliteConnection) -> Writer {
        Writer(tokio::sync::Mutex::new(connection))
    }

    /// The connection, once every earlier user is done with it.
    pub(super) async fn lock(&self) -> MutexGuard<'_, SqliteConnection> {
        self.0.lock().await
    }
}

/// Read-only connections, each lent to one reader at a time.
#[derive(Debug)]
pub(super) struct Readers {
    idle: Mutex<Vec<SqliteConnection>>,
    /// As many permits as connections: a reader holding one always finds one idle.
    permits: Semaphore,
}

impl Readers {
    /// Opens `count` read-only connections with `options`.
    pub(super) async fn open(
        options: &SqliteConnectOptions,
        count: usize,
    ) -> Result<Readers, sqlx::Error> {
        let mut idle = Vec::with_capacity(count);
        for _ in 0..count {
            idle.push(options.connect().await?);
        }
        Ok(Readers {
            idle: Mutex::new(idle),
            permits: Semaphore::new(count),
        })
    }

    /// A connection of its own for the caller, waiting while all are lent.
    pub(super) async fn acquire(&self) -> Reader<'_> {
        let permit = self
            .permits
            .acquire()
            .await
            .expect("the readers' semaphore is never closed");
        let connection = self
            .idle
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .pop()
            .expect("a permit always finds an idle connection");
        Reader {
            connection: Some(connection),
            readers: self,
            _permit: permit,
        }
    }
}

/// A lent read-only connection; it goes back to the others when dropped.
pub(super) struct Reader<'a> {
    connection: Option<SqliteConnection>,
    readers: &'a Readers,
    // Dropped after `drop` has put the connection back (fields drop after the body).
    _permit: SemaphorePermit<'a>,
}

impl Deref for Reader<'_> {
    type Target = SqliteConnection;

    fn deref(&self) -> &SqliteConnection {
        self.connection.as_ref().expect("present until dropped")
    }
}

impl DerefMut for Reader<'_> {
    fn deref_mut(&mut self) -> &mut SqliteConnection {
        self.connection.as_mut().expect("present until dropped")
    }
}

impl Drop for Reader<'_> {
    fn drop(&mut self) {
        if let Some(connection) = self.connection.take() {
            self.readers
                .idle
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .push(connection);
        }
    }
}
