//! Open WebSocket connections by id: how the Management API stand-in reaches a socket,
//! and how the local stack's own functions post to one (in process, as a [`Pusher`]).
//!
//! The functions inside `fhir-ws serve` do not post to its HTTP Management API: that
//! cost two more file descriptors and an HTTP round trip per post, which is what ran the
//! stack out of descriptors at 10,000 clients. The HTTP stand-in stays for outside
//! callers; the Lambdas' SDK adapter keeps its own tests against a real endpoint.
//!
//! The registry also carries what `fhir-ws serve --fault-injection` needs to break a
//! connection the way networks and servers do (see [`super::faults`]): a connection can
//! be *frozen* (a half-open socket: posts succeed, nothing arrives, nothing the client
//! sends is read), and the last frame posted to each is kept so it can be sent again.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use axum::extract::ws::{CloseFrame, Message};
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

/// A registered connection and its fault-injection state.
#[derive(Debug)]
struct Slot {
    entry: Entry,
    /// Half-open: frames either way are dropped without a word.
    frozen: bool,
    /// The last frame posted to it (kept only with fault injection on).
    last_frame: Option<Message>,
}

#[derive(Debug, Default)]
struct Registry {
    slots: HashMap<String, Slot>,
    /// Whether to keep each connection's last frame (`--fault-injection`).
    keep_last_frames: bool,
}

/// The registry, shared by the WebSocket and Management API stand-ins.
#[derive(Debug, Clone, Default)]
pub struct Connections(Arc<Mutex<Registry>>);

/// The close code API Gateway sends when it ends a connection itself (idle timeout,
/// two-hour limit, deployment): 1001, going away.
const GOING_AWAY: u16 = 1001;

impl Connections {
    /// A registry that keeps each connection's last frame, for [`Connections::repeat_last`].
    pub fn keeping_last_frames() -> Self {
        Self(Arc::new(Mutex::new(Registry { slots: HashMap::new(), keep_last_frames: true })))
    }

    fn lock(&self) -> MutexGuard<'_, Registry> {
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Registers an open connection (after `$connect` accepted it).
    pub fn insert(&self, id: &str, entry: Entry) {
        self.lock().slots.insert(id.to_owned(), Slot { entry, frozen: false, last_frame: None });
    }

    /// Forgets a connection.
    pub fn remove(&self, id: &str) {
        self.lock().slots.remove(id);
    }

    /// The connection, if it is open.
    pub fn get(&self, id: &str) -> Option<Entry> {
        self.lock().slots.get(id).map(|slot| slot.entry.clone())
    }

    /// How many are open.
    pub fn len(&self) -> usize {
        self.lock().slots.len()
    }

    /// True when none is open.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Asks every open connection to close.
    pub fn close_all(&self) {
        for slot in self.lock().slots.values() {
            let _ = slot.entry.sender.send(Message::Close(None));
        }
    }

    /// Closes the connection as API Gateway does when it drops one (1001, going away);
    /// whether it was open.
    pub fn drop_connection(&self, id: &str) -> bool {
        let Some(slot) = self.lock().slots.get(id).map(|slot| slot.entry.sender.clone()) else { return false };
        let frame = CloseFrame { code: GOING_AWAY, reason: "Going away".into() };
        slot.send(Message::Close(Some(frame))).is_ok()
    }

    /// Makes the connection half-open: from now on nothing reaches it and nothing it
    /// sends is read, while posts to it still succeed. Whether it was open.
    pub fn freeze(&self, id: &str) -> bool {
        self.lock().slots.get_mut(id).map(|slot| slot.frozen = true).is_some()
    }

    /// Whether the connection is frozen (its frames are to be ignored).
    pub fn is_frozen(&self, id: &str) -> bool {
        self.lock().slots.get(id).is_some_and(|slot| slot.frozen)
    }

    /// Sends the last frame posted to the connection once more, as a redelivery would;
    /// whether there was one.
    pub fn repeat_last(&self, id: &str) -> bool {
        let registry = self.lock();
        let Some(slot) = registry.slots.get(id) else { return false };
        match &slot.last_frame {
            Some(frame) if !slot.frozen => slot.entry.sender.send(frame.clone()).is_ok(),
            _ => false,
        }
    }
}

impl Pusher for Connections {
    /// One text frame to the socket (binary if not UTF-8, as the HTTP stand-in does);
    /// [`PushError::Gone`] for an unknown or closing connection. The Management API
    /// endpoint is this process, whatever `callback_url` says.
    async fn post(&self, _callback_url: &str, connection_id: &str, payload: &[u8]) -> Result<(), PushError> {
        let frame = match std::str::from_utf8(payload) {
            Ok(text) => Message::Text(text.into()),
            Err(_) => Message::Binary(payload.to_vec().into()),
        };
        let mut registry = self.lock();
        let keep = registry.keep_last_frames;
        let Some(slot) = registry.slots.get_mut(connection_id) else { return Err(PushError::Gone) };
        if slot.frozen {
            return Ok(());
        }
        if keep {
            slot.last_frame = Some(frame.clone());
        }
        slot.entry.sender.send(frame).map_err(|_| PushError::Gone)
    }

    async fn close(&self, _callback_url: &str, connection_id: &str) -> Result<(), PushError> {
        let Some(entry) = self.get(connection_id) else { return Err(PushError::Gone) };
        entry.sender.send(Message::Close(None)).map_err(|_| PushError::Gone)
    }
}
