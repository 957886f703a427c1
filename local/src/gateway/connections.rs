//! Open WebSocket connections by id: how the Management API stand-in reaches a socket.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use axum::extract::ws::Message;
use tokio::sync::mpsc::UnboundedSender;

/// One open connection.
#[derive(Debug, Clone)]
pub struct Entry {
    /// Frames to write to the socket.
    pub sender: UnboundedSender<Message>,
    /// When it connected, epoch milliseconds.
    pub connected_at: i64,
    /// The client's address.
    pub source_ip: String,
}

/// The registry, shared by the WebSocket and Management API stand-ins.
#[derive(Debug, Clone, Default)]
pub struct Connections(Arc<Mutex<HashMap<String, Entry>>>);

impl Connections {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, Entry>> {
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Registers an open connection (after `$connect` accepted it).
    pub fn insert(&self, id: &str, entry: Entry) {
        self.lock().insert(id.to_owned(), entry);
    }

    /// Forgets a connection.
    pub fn remove(&self, id: &str) {
        self.lock().remove(id);
    }

    /// The connection, if it is open.
    pub fn get(&self, id: &str) -> Option<Entry> {
        self.lock().get(id).cloned()
    }

    /// How many are open.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// True when none is open.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Asks every open connection to close.
    pub fn close_all(&self) {
        for entry in self.lock().values() {
            let _ = entry.sender.send(Message::Close(None));
        }
    }
}
