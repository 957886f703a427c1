//! Follows one subscription and prints each event once, in order:
//!
//! ```text
//! cargo run -p fhir-ws-client --example subscribe -- http://127.0.0.1:8080 alice-token \
//!     http://example.org/topics/encounter-start
//! ```
//!
//! (with `fhir-ws serve` running; send events with `fhir-ws notify`).

use fhir_ws_client::{Client, SubscriptionRequest, Update};
use futures::StreamExt as _;

#[tokio::main]
async fn main() -> Result<(), fhir_ws_client::Error> {
    let mut arguments = std::env::args().skip(1);
    let (Some(base), Some(token), Some(topic)) = (arguments.next(), arguments.next(), arguments.next()) else {
        eprintln!("usage: subscribe <FHIR base URL> <bearer token> <topic URL>");
        std::process::exit(2);
    };
    let request = SubscriptionRequest { heartbeat_period: Some(60), ..SubscriptionRequest::new(topic) };
    let mut updates = Client::builder(base).bearer(token).create(request).subscribe()?;
    while let Some(update) = updates.next().await {
        match update {
            Ok(Update::Notification(n)) => println!("#{} {}", n.event_number, n.focus.unwrap_or_default()),
            Ok(Update::Created { subscription }) => eprintln!("created Subscription/{subscription}"),
            Ok(Update::Disconnected { reason }) => eprintln!("disconnected: {reason}; reconnecting"),
            Ok(_) => {}
            Err(error) if error.is_fatal() => return Err(error),
            Err(error) => eprintln!("{error}"),
        }
    }
    Ok(())
}
