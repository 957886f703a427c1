//! Open WebSocket connections by id: how the Management API stand-in reaches a socket,
//! and how the local stack's own functions post to one (in process, as a [`Pusher`]).
//!
//! The functions inside `fhir-ws serve` do not post to its HTTP Management API: that
//! cost two more file descriptors and an HTTP round trip per post, which is what ran the
//! stack out of descriptors at 10,000 clients. The HTTP stand-in stays for outside
//! callers; the Lambdas' SDK adapter keeps its own tests against a real endpoint.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use axum::extract::ws::Message;
use fhir_ws_core::push::{PushError, Pusher};
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

impl Pusher for Connections {
    /// One text frame to the socket (binary if not UTF-8, as the HTTP stand-in does);
    /// [`PushError::Gone`] for an unknown or closing connection. The Management API
    /// endpoint is this process, whatever `callback_url` says.
    async fn post(&self, _callback_url: &str, connection_id: &str, payload: &[u8]) -> Result<(), PushError> {
        let Some(entry) = self.get(connection_id) else { return Err(PushError::Gone) };
        let frame = match std::str::from_utf8(payload) {
            Ok(text) => Message::Text(text.into()),
            Err(_) => Message::Binary(payload.to_vec().into()),
        };
        entry.sender.send(frame).map_err(|_| PushError::Gone)
    }

    async fn close(&self, _callback_url: &str, connection_id: &str) -> Result<(), PushError> {
        let Some(entry) = self.get(connection_id) else { return Err(PushError::Gone) };
        entry.sender.send(Message::Close(None)).map_err(|_| PushError::Gone)
    }
}
