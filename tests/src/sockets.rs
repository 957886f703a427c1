//! A real WebSocket client's side of a test: reading notification frames off a socket
//! bound on `fhir-ws serve`.

use std::time::Duration;

use fhir_ws_client::Status;
use futures::{SinkExt as _, StreamExt as _};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

/// A client socket on the local stack.
pub type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// The next text frame as JSON (a bare string when it is not JSON), within 10 s.
pub async fn next_json(socket: &mut Socket) -> Value {
    loop {
        let frame = tokio::time::timeout(Duration::from_secs(10), socket.next()).await.expect("a frame within 10 s");
        match frame.expect("open").expect("frame") {
            Message::Text(text) => {
                return serde_json::from_str(text.as_str()).unwrap_or(Value::String(text.to_string()));
            }
            Message::Ping(_) | Message::Pong(_) => continue,
            other => panic!("unexpected {other:?}"),
        }
    }
}

/// The next frame that is not a handshake (handshakes are at least once).
pub async fn next_after_handshakes(socket: &mut Socket) -> Value {
    loop {
        let frame = next_json(socket).await;
        if Status::of_bundle(&frame).is_none_or(|view| view.kind != "handshake") {
            return frame;
        }
    }
}

/// Nothing further has arrived: the next frame answers a ping.
pub async fn nothing_more(socket: &mut Socket, why: &str) {
    socket.send(Message::text("ping")).await.expect("ping sent");
    assert_eq!(next_after_handshakes(socket).await, json!("pong"), "{why}");
}

/// Opens a socket at `url` and binds `token`, waiting for one handshake per subscription.
pub async fn bound(url: &str, token: &str, subscriptions: usize) -> Socket {
    let (mut socket, _) = tokio_tungstenite::connect_async(url).await.expect("the WebSocket opens");
    socket.send(Message::text(format!("bind-with-token {token}"))).await.expect("bind sent");
    for _ in 0..subscriptions {
        let kind = Status::of_bundle(&next_json(&mut socket).await).map(|v| v.kind);
        assert_eq!(kind.as_deref(), Some("handshake"));
    }
    socket
}
