//! The `fhir-ws` command line: `serve`, `subscribe`, `notify`.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use serde_json::{Value, json};

use fhir_ws_core::fhir::version::FhirVersion;
use fhir_ws_core::http::AuthorizationMode;
use fhir_ws_core::http::cors::AllowedOrigins;
use fhir_ws_core::topics::TopicRegistry;

use crate::client::{Api, describe_update, subscribe};
use crate::gateway::{CorsPolicy, DEFAULT_CORS_ORIGINS, LOCAL_RELAY_SECRET, Options, Users, serve};
use fhir_ws_client::{Status, Update};

/// FHIR topic-based Subscriptions over WebSockets, on one machine.
#[derive(Debug, Parser)]
#[command(name = "fhir-ws", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the whole stack on 127.0.0.1: HTTP API, WebSocket API, Management API,
    /// an SQS stand-in and the heartbeat schedule.
    Serve {
        /// Port to listen on (0: any free port).
        #[arg(long, default_value_t = 8080)]
        port: u16,
        /// Use a DynamoDB-compatible server instead of the embedded store (tables from
        /// template.yaml are created if missing).
        #[arg(long, env = "AWS_ENDPOINT_URL_DYNAMODB")]
        dynamodb_endpoint: Option<String>,
        /// Extra bearer token for the local authorizer stand-in, as TOKEN=PRINCIPAL
        /// (alice-token=alice, bob-token=bob and patient-token=patient are always there).
        #[arg(long = "user", value_name = "TOKEN=PRINCIPAL")]
        users: Vec<String>,
        /// A JSON file of further users: bearer token → {"sub", "scope", "patient",
        /// "fhirUser"} (the claims a real authorizer would pass on).
        #[arg(long = "users", value_name = "FILE")]
        users_file: Option<PathBuf>,
        /// Binding token lifetime in seconds.
        #[arg(long, default_value_t = 1800)]
        token_lifetime: i64,
        /// Seconds between heartbeat runs.
        #[arg(long, default_value_t = 60)]
        heartbeat_seconds: u64,
        /// Base URL of the FHIR server your events' resources live on.
        #[arg(long, default_value = "http://localhost:8080/fhir")]
        fhir_base_url: String,
        /// Signing keys (keyid:secret[,…]); default: a random key per run.
        #[arg(long, env = "TOKEN_SIGNING_KEYS")]
        signing_keys: Option<String>,
        /// Seconds each event stays answerable by $events.
        #[arg(long, default_value_t = fhir_ws_core::config::DEFAULT_EVENT_RETENTION_SECONDS)]
        event_retention: i64,
        /// The websocket-url handed to clients, when they reach /ws through a proxy or
        /// tunnel (the template's PublicWebSocketUrl); default ws://127.0.0.1:<port>/ws.
        #[arg(long)]
        websocket_url: Option<String>,
        /// A secret upstream FHIR servers send to POST /relay as `Authorization: Bearer
        /// …` (repeatable; default: the development secret printed at start).
        #[arg(long = "relay-secret", value_name = "SECRET")]
        relay_secrets: Vec<String>,
        /// A folder of SubscriptionTopic JSON files to serve and evaluate instead of
        /// those compiled in from infra/topics/ (try infra/topics-examples).
        #[arg(long, value_name = "DIR")]
        topics: Option<PathBuf>,
        /// The FHIR version of the resources in events that name none (`fhirVersion` in an
        /// event overrides it; relayed Bundles carry their own): R4, R4B or R5.
        #[arg(long, default_value = "R5", value_parser = parse_fhir_version)]
        event_fhir_version: FhirVersion,
        /// How callers are authorized: owner (ownership only) or smart (SMART on FHIR
        /// scopes too; local users carry user/*.cruds).
        #[arg(long, default_value = "owner", value_parser = parse_authorization)]
        authorization: AuthorizationMode,
        /// Most WebSockets open at once; further upgrades get 503 (each costs a file
        /// descriptor: keep it under `ulimit -n`).
        #[arg(long, default_value_t = crate::gateway::DEFAULT_MAX_CONNECTIONS)]
        max_connections: usize,
        /// An origin whose scripts may call the HTTP API (CORS), e.g.
        /// https://app.example.org; repeatable. `*` allows any, `loopback` any page of this
        /// machine, `none` none. Default: loopback.
        #[arg(long = "cors-origin", value_name = "ORIGIN")]
        cors_origins: Vec<String>,
        /// `Access-Control-Max-Age` of CORS preflight answers, in seconds.
        #[arg(long, default_value_t = fhir_ws_core::http::cors::DEFAULT_MAX_AGE_SECONDS)]
        cors_max_age: u32,
        /// A browser origin the WebSocket API accepts at $connect (repeatable; same forms
        /// as --cors-origin). Default: no Origin check (tokens decide).
        #[arg(long = "websocket-origin", value_name = "ORIGIN")]
        websocket_origins: Vec<String>,
        /// Serve POST /local/faults, which drops, freezes (half-open) or repeats frames of
        /// a subscription's connections: for testing clients against the stack.
        #[arg(long)]
        fault_injection: bool,
    },
    /// Put every Subscription of a deployed stack's table into its routing bucket: once
    /// after upgrading a stack whose table predates the routing index, and after
    /// changing the deployed topics' canFilterBy. Uses the AWS credentials and region of
    /// the environment.
    Reindex {
        /// The subscriptions table (the stack's SubscriptionsTableName output).
        #[arg(long)]
        table: String,
        /// The topics the stack deploys (default: those compiled in from infra/topics/).
        #[arg(long, value_name = "DIR")]
        topics: Option<PathBuf>,
        /// The stack's EventFhirVersion.
        #[arg(long, default_value = "R5", value_parser = parse_fhir_version)]
        event_fhir_version: FhirVersion,
    },
    /// Print $status of the caller's subscriptions (or of one).
    Status {
        /// FHIR base URL of the server.
        #[arg(long, default_value = "http://127.0.0.1:8080")]
        server: String,
        /// Bearer token (locally: alice-token or bob-token).
        #[arg(long, default_value = "alice-token")]
        token: String,
        /// Only this Subscription id.
        #[arg(long)]
        subscription: Option<String>,
        /// Print the whole Bundle, not one line per subscription.
        #[arg(long)]
        json: bool,
        /// FHIR version to speak: R5 (the server's base), or R4 / R4B (the Backport IG's
        /// shapes at the server's /R4 and /R4B bases).
        #[arg(long, default_value = "R5", value_parser = parse_fhir_version)]
        fhir_version: FhirVersion,
    },
    /// Create (or use) a websocket Subscription, bind to it and print notifications.
    Subscribe {
        /// FHIR base URL of the server.
        #[arg(long, default_value = "http://127.0.0.1:8080")]
        server: String,
        /// Bearer token (locally: alice-token or bob-token).
        #[arg(long, default_value = "alice-token")]
        token: String,
        /// Create a Subscription to this topic…
        #[arg(long, conflicts_with = "subscription", required_unless_present = "subscription")]
        topic: Option<String>,
        /// …or use this existing Subscription id.
        #[arg(long)]
        subscription: Option<String>,
        /// A filter for the created Subscription, as the Backport IG writes them
        /// (`Encounter?patient=Patient/123`); repeatable.
        #[arg(long = "filter", value_name = "CRITERIA", requires = "topic")]
        filters: Vec<String>,
        /// Content level of a created Subscription: empty, id-only or full-resource.
        #[arg(long, default_value = "id-only")]
        content: String,
        /// heartbeatPeriod of a created Subscription, in seconds.
        #[arg(long)]
        heartbeat_period: Option<u32>,
        /// Print whole notification Bundles, not one line each.
        #[arg(long)]
        json: bool,
        /// The last event number already seen (by an earlier run): later ones still
        /// retained are fetched with $events and printed first.
        #[arg(long, value_name = "EVENT_NUMBER")]
        since: Option<u64>,
        /// FHIR version to speak: R5 (the server's base), or R4 / R4B (the Backport IG's
        /// shapes at the server's /R4 and /R4B bases).
        #[arg(long, default_value = "R5", value_parser = parse_fhir_version)]
        fhir_version: FhirVersion,
    },
    /// Send an event (a focus resource from a file) to the local stack's fan-out, or an
    /// upstream server's notification Bundle to its relay endpoint.
    Notify {
        /// Base URL of the local stack.
        #[arg(long, default_value = "http://127.0.0.1:8080")]
        server: String,
        /// The SubscriptionTopic canonical URL (with --bundle: for a notification that
        /// names none, as `empty` ones may)…
        #[arg(long, conflicts_with = "subscription", required_unless_present_any = ["subscription", "bundle", "change"])]
        topic: Option<String>,
        /// …or one Subscription id.
        #[arg(long)]
        subscription: Option<String>,
        /// File holding the focus resource (FHIR JSON).
        #[arg(long, required_unless_present = "bundle", conflicts_with = "bundle")]
        focus: Option<PathBuf>,
        /// Files holding additional context resources.
        #[arg(long)]
        context: Vec<PathBuf>,
        /// File holding a notification Bundle (R4, R4B or R5) to post to POST /relay, as
        /// an upstream FHIR server would.
        #[arg(long, conflicts_with = "subscription")]
        bundle: Option<PathBuf>,
        /// The relay secret sent with --bundle.
        #[arg(long, default_value = crate::gateway::LOCAL_RELAY_SECRET)]
        relay_secret: String,
        /// Send a resource change for the deployed topics to evaluate: create, update or
        /// delete. --focus is the new version (on delete, the deleted one).
        #[arg(long, value_name = "INTERACTION", conflicts_with_all = ["topic", "subscription", "bundle"])]
        change: Option<String>,
        /// File holding the version before an update (--change update).
        #[arg(long, requires = "change")]
        previous: Option<PathBuf>,
        /// The FHIR version the resources are written in (the event's `fhirVersion`);
        /// default: the stack's --event-fhir-version.
        #[arg(long, value_parser = parse_fhir_version, conflicts_with = "bundle")]
        fhir_version: Option<FhirVersion>,
    },
}

fn parse_fhir_version(text: &str) -> Result<FhirVersion, String> {
    text.parse()
}

fn parse_authorization(text: &str) -> Result<AuthorizationMode, String> {
    text.parse()
}

fn read_resource(path: &PathBuf) -> Result<Value, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    serde_json::from_str(&text).map_err(|e| format!("{}: not JSON: {e}", path.display()))
}

/// Runs the command line; the exit code says whether it worked.
pub fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("fhir-ws: cannot start: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli.command)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("fhir-ws: {message}");
            ExitCode::FAILURE
        }
    }
}

async fn run(command: Command) -> Result<(), String> {
    match command {
        Command::Serve {
            port,
            dynamodb_endpoint,
            users,
            users_file,
            token_lifetime,
            heartbeat_seconds,
            fhir_base_url,
            signing_keys,
            event_retention,
            websocket_url,
            relay_secrets,
            topics,
            event_fhir_version,
            authorization,
            max_connections,
            cors_origins,
            cors_max_age,
            websocket_origins,
            fault_injection,
        } => {
            let topics =
                topics.as_deref().map(|folder| TopicRegistry::from_folder(folder, event_fhir_version)).transpose()?;
            let mut known = Users::default();
            if let Some(file) = &users_file {
                let text = std::fs::read_to_string(file).map_err(|e| format!("{}: {e}", file.display()))?;
                known.add_file(&text).map_err(|e| format!("{}: {e}", file.display()))?;
            }
            for user in &users {
                let (token, principal) =
                    user.split_once('=').ok_or(format!("--user {user}: expected TOKEN=PRINCIPAL"))?;
                known.add(token, principal);
            }
            let cors = CorsPolicy {
                origins: AllowedOrigins::parse(&if cors_origins.is_empty() {
                    DEFAULT_CORS_ORIGINS.to_owned()
                } else {
                    cors_origins.join(",")
                })
                .map_err(|e| format!("--cors-origin: {e}"))?,
                max_age_seconds: cors_max_age,
            };
            let websocket_origins = websocket_origins.join(",");
            AllowedOrigins::parse(&websocket_origins).map_err(|e| format!("--websocket-origin: {e}"))?;
            let listener =
                tokio::net::TcpListener::bind(("127.0.0.1", port)).await.map_err(|e| format!("port {port}: {e}"))?;
            let address = listener.local_addr().map_err(|e| e.to_string())?;
            // Listen for the stop signals before announcing the address, so a signal sent
            // as soon as the banner appears is never missed.
            let stop = stop_signal().map_err(|e| format!("signal handlers: {e}"))?;
            let store =
                dynamodb_endpoint.as_deref().map_or("embedded (in memory)".to_owned(), |e| format!("DynamoDB at {e}"));
            let faults = if fault_injection {
                format!("fault injection:       POST http://{address}/local/faults\n  ")
            } else {
                String::new()
            };
            // `writeln!`, not `println!`: a closed stdout must not stop the server.
            let _ = writeln!(
                std::io::stdout().lock(),
                "fhir-ws local stack on http://{address}\n  \
                 web console:           http://{address}/  (open it in a browser)\n  \
                 HTTP API (FHIR base):  http://{address}/Subscription…\n  \
                 WebSocket API:         ws://{address}/ws\n  \
                 Management API:        http://{address}/local/@connections/{{id}}\n  \
                 events (SQS stand-in): POST http://{address}/local/events\n  \
                 {faults}relay (upstream FHIR): POST http://{address}/relay  (Authorization: Bearer {})\n  \
                 store:                 {store}\n  \
                 browser origins:       {} (CORS; --cors-origin)\n  \
                 bearer tokens:         alice-token (alice), bob-token (bob), patient-token (Patient/example){}\n\n\
                 Quick start, in another terminal:\n  \
                 cargo run -p fhir-ws-local -- subscribe --server http://{address} --topic http://example.org/topics/encounter-start\n\
                 and in a third:\n  \
                 cargo run -p fhir-ws-local -- notify --server http://{address} --topic http://example.org/topics/encounter-start --focus infra/examples/encounter.json\n\
                 Ctrl-C stops the server.",
                if relay_secrets.is_empty() { LOCAL_RELAY_SECRET } else { "<your --relay-secret>" },
                if cors_origins.is_empty() { DEFAULT_CORS_ORIGINS.to_owned() } else { cors_origins.join(", ") },
                if users.is_empty() { String::new() } else { format!(", and {} more", users.len()) }
            );
            let options = Options {
                dynamodb_endpoint,
                users: known,
                signing_keys,
                token_lifetime_seconds: token_lifetime,
                heartbeat_every: Duration::from_secs(heartbeat_seconds.max(1)),
                fhir_base_url,
                event_retention_seconds: event_retention,
                public_websocket_url: websocket_url,
                relay_secrets: (!relay_secrets.is_empty()).then(|| relay_secrets.join(",")),
                topics,
                event_fhir_version,
                max_connections,
                authorization,
                cors,
                websocket_origins,
                fault_injection,
            };
            serve(listener, options, stop).await.map_err(|e| e.to_string())
        }
        Command::Subscribe {
            server,
            token,
            topic,
            subscription,
            content,
            heartbeat_period,
            json,
            since,
            fhir_version,
            filters,
        } => {
            let api = Api::new(&server, &token).in_version(fhir_version);
            let id = match (subscription, topic) {
                (Some(id), _) => id,
                (None, Some(topic)) => {
                    let id = api
                        .create_filtered_subscription(&topic, &content, heartbeat_period, &filters)
                        .await
                        .map_err(|e| e.to_string())?;
                    eprintln!(
                        "created Subscription/{id} (FHIR {}, topic {topic}, content {content})",
                        fhir_version.path_segment()
                    );
                    id
                }
                (None, None) => return Err("give --topic or --subscription".to_owned()),
            };
            eprintln!("binding to Subscription/{id}; notifications follow (Ctrl-C to stop)");
            // In --json mode each notification Bundle is printed once (an $events Bundle
            // carries several events).
            let mut last_printed: Option<std::sync::Arc<Value>> = None;
            subscribe(&api, &id, since, |update| {
                let mut out = std::io::stdout().lock();
                match update {
                    Ok(Update::Notification(n)) if json => {
                        if !last_printed.as_ref().is_some_and(|raw| std::sync::Arc::ptr_eq(raw, &n.raw)) {
                            let _ =
                                writeln!(out, "{}", serde_json::to_string_pretty(n.raw.as_ref()).unwrap_or_default());
                            last_printed = Some(n.raw.clone());
                        }
                    }
                    // Connection notices go to stderr so stdout stays notifications only.
                    Ok(Update::Disconnected { .. }) | Ok(Update::Renewed { .. }) => {
                        for line in describe_update(update) {
                            eprintln!("{line}");
                        }
                        if let Ok(Update::Renewed { expiration }) = update {
                            eprintln!("token renewed; it expires {expiration}");
                        }
                    }
                    Ok(Update::Status(_)) if json => {}
                    other => {
                        for line in describe_update(other) {
                            let _ = writeln!(out, "{line}");
                        }
                    }
                }
            })
            .await
            .map_err(|e| e.to_string())
        }
        Command::Reindex { table, topics, event_fhir_version } => {
            let topics = match topics {
                Some(folder) => TopicRegistry::from_folder(&folder, event_fhir_version)?,
                None => TopicRegistry::deployed(event_fhir_version)?.clone(),
            };
            let aws = fhir_ws_core::aws::load_sdk_config().await.map_err(|e| e.to_string())?;
            let store = fhir_ws_core::store::dynamodb::DynamoSubscriptionStore::new(
                aws_sdk_dynamodb::Client::new(&aws),
                table.clone(),
            );
            let (read, rewritten) = store.reindex(&topics).await.map_err(|e| e.to_string())?;
            let _ = writeln!(std::io::stdout().lock(), "{table}: {read} subscriptions read, {rewritten} routed anew");
            Ok(())
        }
        Command::Status { server, token, subscription, json, fhir_version } => {
            let api = Api::new(&server, &token).in_version(fhir_version);
            let bundle = api.status(subscription.as_deref()).await.map_err(|e| e.to_string())?;
            let mut out = std::io::stdout().lock();
            if json {
                let _ = writeln!(out, "{}", serde_json::to_string_pretty(&bundle).unwrap_or_default());
                return Ok(());
            }
            for entry in bundle["entry"].as_array().map(Vec::as_slice).unwrap_or_default() {
                let Some(status) = Status::read(&entry["resource"]) else { continue };
                let _ = writeln!(
                    out,
                    "Subscription/{}  {}  events {}  topic {}",
                    status.subscription,
                    status.status.as_deref().unwrap_or("?"),
                    status.events_since_subscription_start.map_or("?".to_owned(), |n| n.to_string()),
                    status.topic.as_deref().unwrap_or("(none)"),
                );
            }
            Ok(())
        }
        Command::Notify {
            server,
            topic,
            subscription,
            focus,
            context,
            bundle,
            relay_secret,
            change,
            previous,
            fhir_version,
        } => {
            if let Some(bundle) = bundle {
                let bundle = read_resource(&bundle)?;
                let answer = Api::new(&server, &relay_secret)
                    .relay(&bundle, topic.as_deref())
                    .await
                    .map_err(|e| e.to_string())?;
                let _ = writeln!(std::io::stdout().lock(), "{answer}");
                return Ok(());
            }
            let focus = read_resource(&focus.ok_or("give --focus or --bundle")?)?;
            let mut event = json!({ "timestamp": chrono::Utc::now().to_rfc3339() });
            match (change, topic, subscription) {
                (Some(interaction), _, _) => {
                    event["interaction"] = json!(interaction);
                    event["resource"] = focus;
                    if let Some(previous) = previous {
                        event["previous"] = read_resource(&previous)?;
                    }
                }
                (None, Some(topic), _) => (event["topic"], event["focus"]) = (json!(topic), focus),
                (None, None, Some(id)) => {
                    (event["subscription"], event["focus"]) = (json!(format!("Subscription/{id}")), focus)
                }
                (None, None, None) => return Err("give --topic, --subscription or --change".to_owned()),
            }
            let context: Vec<Value> = context.iter().map(read_resource).collect::<Result<_, _>>()?;
            if !context.is_empty() {
                event["additionalContext"] = json!(context);
            }
            if let Some(version) = fhir_version {
                event["fhirVersion"] = json!(version.path_segment());
            }
            let answer = Api::new(&server, "").notify(&event).await.map_err(|e| e.to_string())?;
            let _ = writeln!(std::io::stdout().lock(), "{answer}");
            Ok(())
        }
    }
}

/// Completes on Ctrl-C (SIGINT) or SIGTERM (what a container runtime or service manager
/// sends), so either stops the server cleanly, closing every WebSocket. The handlers are
/// installed when this is called, not when the future is first polled.
fn stop_signal() -> std::io::Result<impl Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut terminate = signal(SignalKind::terminate())?;
    Ok(async move {
        tokio::select! {
            _ = interrupt.recv() => {}
            _ = terminate.recv() => {}
        }
        eprintln!("fhir-ws: stopping");
    })
}
