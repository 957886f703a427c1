//! The store contract: the in-memory and DynamoDB adapters must behave the same.
//! Every test runs against both (`both_stores!`); the DynamoDB run talks to moto_server.

use aws_sdk_dynamodb::types::{AttributeValue, TimeToLiveStatus};
use chrono::{DateTime, TimeDelta, Utc};
use fhir_ws_core::fhir::Subscription;
use fhir_ws_core::store::{
    Binding, BindingStore, CounterStore, EventCounter, EventRecord, EventStore, HEARTBEAT_SHARDS, StoreError,
    StoredSubscription, SubscriptionStore, TokenRecord, TokenStore, UPSTREAM_CLAIM_SECONDS, UpstreamStore,
    heartbeat_shard,
};
use fhir_ws_tests::websocket::WsStores;
use fhir_ws_tests::{
    Backend, Stores, TokenBackend, all_stores, both_stores, dynamodb_client, tokens_table, unique_principal,
};
use serde_json::json;

fn at(seconds: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(seconds, 0).unwrap_or_default()
}

fn subscription(id: &str) -> Subscription {
    serde_json::from_value(json!({
        "resourceType": "Subscription",
        "id": id,
        "status": "requested",
        "topic": "http://example.org/topic",
        "channelType": {"system": "http://terminology.hl7.org/CodeSystem/subscription-channel-type", "code": "websocket"},
        "content": "full-resource",
        "name": "an element we do not model",
        "_topic": {"extension": [{"url": "http://example.org/x", "valueString": "kept"}]}
    }))
    .unwrap_or_else(|e| panic!("{e}"))
}

fn new_id() -> String {
    fhir_ws_core::fhir::new_id()
}

async fn subscriptions_round_trip<S: Backend, T: TokenBackend>(stores: Stores<S, T>) {
    let store = stores.subscriptions;
    let owner = unique_principal("owner");
    let id = new_id();
    let stored = StoredSubscription::new(&owner, 1, at(1_800_000_000), subscription(&id));
    assert_eq!(store.get(&id).await, Ok(None));
    store.insert(&stored).await.unwrap_or_else(|e| panic!("{e}"));
    let read = store.get(&id).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(read.as_ref(), Some(&stored));
    let read = read.unwrap_or_else(|| panic!("missing"));
    let json = serde_json::to_value(read.resource()).unwrap_or_default();
    assert_eq!(json["_topic"]["extension"][0]["valueString"], "kept");
    assert_eq!(json["meta"]["versionId"], "1");
    assert_eq!(json["meta"]["lastUpdated"], "2027-01-15T08:00:00.000Z");
    assert_eq!(store.insert(&stored).await, Err(StoreError::Conflict), "ids are unique");

    // The SMART grant a subscription keeps comes back with it, and through a replace.
    let grant = fhir_ws_core::smart::subscription::KeptGrant {
        scopes: vec!["patient/Encounter.rs?class=EMER".to_owned(), "patient/Subscription.cruds".to_owned()],
        patient: Some("123".to_owned()),
    };
    let id = new_id();
    let granted = StoredSubscription::new(&owner, 1, at(1_800_000_000), subscription(&id)).with_grant(Some(grant));
    store.insert(&granted).await.unwrap_or_else(|e| panic!("{e}"));
    let read = store.get(&id).await.unwrap_or_else(|e| panic!("{e}")).unwrap_or_else(|| panic!("missing"));
    assert_eq!(read, granted);
    let next = read.next_version(read.resource().clone(), at(1_800_000_100));
    store.replace(&next, 1).await.unwrap_or_else(|e| panic!("{e}"));
    let read = store.get(&id).await.unwrap_or_else(|e| panic!("{e}")).unwrap_or_else(|| panic!("missing"));
    assert_eq!(read.grant(), granted.grant(), "kept through an update");
}
both_stores!(subscriptions_round_trip_unknown_elements_and_unique_ids, subscriptions_round_trip);

async fn replace_is_conditional<S: Backend, T: TokenBackend>(stores: Stores<S, T>) {
    let store = stores.subscriptions;
    let owner = unique_principal("owner");
    let id = new_id();
    let v1 = StoredSubscription::new(&owner, 1, at(1_800_000_000), subscription(&id));
    let missing = StoredSubscription::new(&owner, 2, at(1_800_000_001), subscription(&new_id()));
    assert_eq!(store.replace(&missing, 1).await, Err(StoreError::Conflict), "missing items are not created");
    store.insert(&v1).await.unwrap_or_else(|e| panic!("{e}"));
    let mut changed = subscription(&id);
    changed.status = Some(fhir_ws_core::fhir::SubscriptionState::Off);
    let v2 = StoredSubscription::new(&owner, 2, at(1_800_000_060), changed);
    assert_eq!(store.replace(&v2, 1).await, Ok(()));
    assert_eq!(store.replace(&v2, 1).await, Err(StoreError::Conflict), "stale version loses");
    let read = store.get(&id).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(read, Some(v2));
}
both_stores!(replace_checks_the_version, replace_is_conditional);

async fn delete_and_list<S: Backend, T: TokenBackend>(stores: Stores<S, T>) {
    let store = stores.subscriptions;
    let alice = unique_principal("alice");
    let bob = unique_principal("bob");
    let mut alices: Vec<String> = (0..3).map(|_| new_id()).collect();
    for id in &alices {
        store
            .insert(&StoredSubscription::new(&alice, 1, at(1_800_000_000), subscription(id)))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }
    let bobs = new_id();
    store
        .insert(&StoredSubscription::new(&bob, 1, at(1_800_000_000), subscription(&bobs)))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    alices.sort();
    let listed: Vec<String> =
        store.list_by_owner(&alice).await.unwrap_or_else(|e| panic!("{e}")).iter().map(|s| s.id().to_owned()).collect();
    assert_eq!(listed, alices, "only the owner's, ordered by id");
    assert_eq!(store.delete(&alices[0]).await, Ok(true));
    assert_eq!(store.delete(&alices[0]).await, Ok(false));
    assert_eq!(store.get(&alices[0]).await, Ok(None));
    assert_eq!(store.list_by_owner(&alice).await.map(|l| l.len()), Ok(2));
    assert_eq!(store.list_by_owner(&unique_principal("nobody")).await, Ok(Vec::new()));
}
both_stores!(delete_and_list_by_owner, delete_and_list);

fn token(expires_at: i64) -> TokenRecord {
    TokenRecord {
        token_id: new_id(),
        owner: unique_principal("owner"),
        subscription_ids: vec![new_id(), new_id()],
        key_id: "k1".to_owned(),
        issued_at: expires_at - 1800,
        expires_at,
        revoked: false,
        grant: None,
    }
}

async fn tokens_round_trip<S: Backend, T: TokenBackend>(stores: Stores<S, T>) {
    let store = stores.tokens;
    let record = token(1_800_001_800);
    assert_eq!(store.get_token(&record.token_id).await, Ok(None));
    assert_eq!(store.put_token(&record).await, Ok(()));
    assert_eq!(store.get_token(&record.token_id).await, Ok(Some(record.clone())));
    assert_eq!(store.revoke_token(&record.token_id).await, Ok(true));
    let revoked = store.get_token(&record.token_id).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(revoked.map(|r| r.revoked), Some(true));
    assert_eq!(store.revoke_token(&new_id()).await, Ok(false), "revoking a missing token creates nothing");
    // A token issued in smart mode keeps its grant snapshot.
    let mut granted = token(1_800_001_800);
    granted.grant = Some(fhir_ws_core::smart::subscription::KeptGrant {
        scopes: vec!["patient/*.rs".to_owned()],
        patient: Some("123".to_owned()),
    });
    store.put_token(&granted).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(store.get_token(&granted.token_id).await, Ok(Some(granted)));
}
both_stores!(tokens_round_trip_and_revoke, tokens_round_trip);

/// An expired row is still returned: TTL deletion is lazy, so expiry is the caller's
/// check against the clock, never inferred from the row being gone.
async fn expired_rows_are_returned<S: Backend, T: TokenBackend>(stores: Stores<S, T>) {
    let past = (Utc::now() - TimeDelta::days(1)).timestamp();
    let record = token(past);
    stores.tokens.put_token(&record).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(stores.tokens.get_token(&record.token_id).await, Ok(Some(record)));
}
both_stores!(expired_token_rows_are_still_readable, expired_rows_are_returned);

/// Asserts that the item of `table` under `key` holds `expiresAt` as a top-level Number
/// of epoch seconds equal to `expected`, and that the table's TTL is enabled on it.
async fn assert_ttl_attribute(table: &str, key: &[(&str, AttributeValue)], expected: i64) {
    let client = dynamodb_client().await;
    let mut get = client.get_item().table_name(table);
    for (name, value) in key {
        get = get.key(*name, value.clone());
    }
    let item = get.send().await.unwrap().item.unwrap_or_default();
    assert_eq!(item.get("expiresAt"), Some(&AttributeValue::N(expected.to_string())), "{table}");
    let ttl = client.describe_time_to_live().table_name(table).send().await.unwrap().time_to_live_description.unwrap();
    assert_eq!(ttl.attribute_name(), Some("expiresAt"), "{table}");
    assert_eq!(ttl.time_to_live_status(), Some(&TimeToLiveStatus::Enabled), "{table}");
}

/// The TTL attribute is a top-level Number holding epoch seconds, and TTL is enabled on it.
#[tokio::test]
async fn dynamodb_token_ttl_is_a_number_of_epoch_seconds() {
    let stores = fhir_ws_tests::dynamodb_stores().await;
    let record = token(1_800_001_800);
    stores.tokens.put_token(&record).await.unwrap_or_else(|e| panic!("{e}"));
    assert_ttl_attribute(&tokens_table(), &[("tokenId", AttributeValue::S(record.token_id))], 1_800_001_800).await;
}

fn binding(connection: &str, subscription: &str, token: &str, expires_at: i64) -> Binding {
    Binding {
        connection_id: connection.to_owned(),
        subscription_id: subscription.to_owned(),
        token_id: token.to_owned(),
        owner: "owner".to_owned(),
        callback_url: "https://w1x2y3z4a5.execute-api.eu-west-1.amazonaws.com/live".to_owned(),
        bound_at: expires_at - 1800,
        expires_at,
        last_message_at: expires_at - 1800,
        handshake_pending: true,
        heartbeat_period: Some(60),
        heartbeat_due_at: Some(expires_at - 1800),
        grant: None,
    }
}

async fn bindings_contract<S: Backend, T: TokenBackend, B: BindingStore, C: CounterStore, E: EventStore>(
    _: Stores<S, T>,
    ws: WsStores<B, C, E>,
) {
    let store = ws.bindings;
    let (a, b) = (format!("{}=", new_id()), format!("{}=", new_id()));
    let (s1, s2) = (new_id(), new_id());
    let (low, high) = if s1 < s2 { (s1.clone(), s2.clone()) } else { (s2.clone(), s1.clone()) };
    store
        .put_bindings(&[binding(&a, &high, "t1", 1_800_001_800), binding(&a, &low, "t1", 1_800_001_800)])
        .await
        .unwrap();
    let mut granted = binding(&b, &s1, "t2", 1_800_001_800);
    granted.grant = Some(fhir_ws_core::smart::subscription::KeptGrant {
        scopes: vec!["patient/Encounter.rs?class=EMER".to_owned()],
        patient: Some("123".to_owned()),
    });
    store.put_bindings(std::slice::from_ref(&granted)).await.unwrap();
    let read = store.bindings_of_connection(&b).await.unwrap();
    assert_eq!(read.first().map(|x| &x.grant), Some(&granted.grant), "a binding keeps its grant snapshot");
    let on_a: Vec<String> =
        store.bindings_of_connection(&a).await.unwrap().into_iter().map(|x| x.subscription_id).collect();
    assert_eq!(on_a, vec![low.clone(), high.clone()], "ordered by subscription id");
    let mut expected = vec![a.clone(), b.clone()];
    expected.sort();
    let on_s1: Vec<String> =
        store.bindings_of_subscription(&s1).await.unwrap().into_iter().map(|x| x.connection_id).collect();
    assert_eq!(on_s1, expected, "every connection bound to the subscription, ordered by connection id");

    // A rebind replaces the row: new token, later expiry.
    let renewed = binding(&a, &s1, "t3", 1_800_003_600);
    store.put_bindings(std::slice::from_ref(&renewed)).await.unwrap();
    let rows = store.bindings_of_connection(&a).await.unwrap();
    assert_eq!(rows.len(), 2);
    assert!(rows.contains(&renewed));

    assert_eq!(store.record_message(&a, &s2, 1_800_000_100, Some(1_800_000_160)).await, Ok(true));
    let row = store.bindings_of_connection(&a).await.unwrap().into_iter().find(|x| x.subscription_id == s2).unwrap();
    assert_eq!(
        (row.last_message_at, row.handshake_pending, row.heartbeat_due_at),
        (1_800_000_100, false, Some(1_800_000_160))
    );
    assert_eq!(store.record_message(&a, &s2, 1_800_000_200, None).await, Ok(true));
    let row = store.bindings_of_connection(&a).await.unwrap().into_iter().find(|x| x.subscription_id == s2).unwrap();
    assert_eq!(row.heartbeat_due_at, None, "no heartbeat wanted: out of the index");
    assert_eq!(store.record_message(&a, &new_id(), 1, None).await, Ok(false), "never creates a binding");
    assert_eq!(store.reschedule_heartbeat(&a, &new_id(), 1).await, Ok(false), "never creates a binding");
    assert_eq!(store.bindings_of_connection(&a).await.unwrap().len(), 2);

    // Unbinding names a token: only t1's remaining row (s2) goes.
    assert_eq!(store.delete_bindings(&a, Some("t1")).await, Ok(1));
    assert_eq!(store.bindings_of_connection(&a).await.unwrap(), vec![renewed]);
    assert_eq!(store.delete_bindings(&a, None).await, Ok(1));
    assert_eq!(store.bindings_of_connection(&a).await, Ok(Vec::new()));
    assert_eq!(store.bindings_of_connection(&b).await.unwrap().len(), 1, "other connections untouched");

    // A connection id that begins with another's is another connection.
    let longer = format!("{a}x");
    let pair = [binding(&a, &s1, "t5", 1_800_003_600), binding(&longer, &s1, "t5", 1_800_003_600)];
    store.put_bindings(&pair).await.unwrap();
    assert_eq!(store.bindings_of_connection(&a).await.unwrap().len(), 1);
    assert_eq!(store.delete_bindings(&a, None).await, Ok(1));
    assert_eq!(store.bindings_of_connection(&longer).await.unwrap().len(), 1, "the longer id keeps its binding");
    assert_eq!(store.delete_bindings(&longer, None).await, Ok(1));

    // One binding at a time, optionally only if a given token made it.
    let (one, two) = (binding(&a, &s1, "t4", 1_800_003_600), binding(&a, &s2, "t4", 1_800_003_600));
    store.put_bindings(&[one, two.clone()]).await.unwrap();
    assert_eq!(store.delete_binding(&a, &s1, Some("another-token")).await, Ok(false), "made by t4, kept");
    assert_eq!(store.delete_binding(&a, &s1, Some("t4")).await, Ok(true));
    assert_eq!(store.delete_binding(&a, &s1, Some("t4")).await, Ok(false), "already gone");
    assert_eq!(store.bindings_of_connection(&a).await.unwrap(), vec![two]);
    assert_eq!(store.delete_binding(&a, &s2, None).await, Ok(true));
    assert_eq!(store.delete_binding(&a, &new_id(), None).await, Ok(false), "never was");
    assert_eq!(store.bindings_of_connection(&a).await, Ok(Vec::new()));
}
all_stores!(bindings_put_list_renew_record_and_delete, bindings_contract);

async fn many_bindings<S: Backend, T: TokenBackend, B: BindingStore, C: CounterStore, E: EventStore>(
    _: Stores<S, T>,
    ws: WsStores<B, C, E>,
) {
    let connection = new_id();
    let rows: Vec<Binding> = (0..60).map(|_| binding(&connection, &new_id(), "t", 1_800_001_800)).collect();
    ws.bindings.put_bindings(&rows).await.unwrap();
    assert_eq!(ws.bindings.bindings_of_connection(&connection).await.unwrap().len(), 60);
    assert_eq!(ws.bindings.delete_bindings(&connection, None).await, Ok(60));
    assert_eq!(ws.bindings.bindings_of_connection(&connection).await, Ok(Vec::new()));
}
all_stores!(more_bindings_than_one_batch_write, many_bindings);

async fn counters_contract<
    S: Backend,
    T: TokenBackend,
    B: BindingStore,
    C: CounterStore + Clone + 'static,
    E: EventStore,
>(
    _: Stores<S, T>,
    ws: WsStores<B, C, E>,
) {
    let subscription = new_id();
    assert_eq!(ws.counters.counter(&subscription).await, Ok(EventCounter::default()));
    assert_eq!(ws.counters.number_event(&subscription, "m:1", 1_800_000_000).await, Ok(1));
    assert_eq!(ws.counters.number_event(&subscription, "m:2", 1_800_000_005).await, Ok(2));
    // A redelivery keeps its number and counts nothing.
    assert_eq!(ws.counters.number_event(&subscription, "m:1", 1_800_000_009).await, Ok(1));
    assert_eq!(
        ws.counters.counter(&subscription).await,
        Ok(EventCounter { events: 2, last_event_at: Some(1_800_000_005) })
    );
    // Concurrent numbering never hands out a number twice, redeliveries included.
    let tasks: Vec<_> = (0..40)
        .map(|n| {
            let counters = ws.counters.clone();
            let id = subscription.clone();
            tokio::spawn(
                async move { counters.number_event(&id, &format!("c:{}", n % 20), 1_800_000_010).await.unwrap() },
            )
        })
        .collect();
    let mut numbers = Vec::new();
    for task in tasks {
        numbers.push(task.await.unwrap());
    }
    numbers.sort_unstable();
    numbers.dedup();
    assert_eq!(numbers, (3..=22).collect::<Vec<u64>>(), "20 distinct events, numbers without gaps");
    assert_eq!(ws.counters.counter(&subscription).await.map(|c| c.events), Ok(22));
    assert_eq!(ws.counters.counter(&new_id()).await.map(|c| c.events), Ok(0), "per subscription");
}
all_stores!(event_counters_are_atomic_idempotent_and_per_subscription, counters_contract);

async fn remembered_window<S: Backend, T: TokenBackend, B: BindingStore, C: CounterStore, E: EventStore>(
    _: Stores<S, T>,
    ws: WsStores<B, C, E>,
) {
    let subscription = new_id();
    for n in 1..=260_u64 {
        assert_eq!(ws.counters.number_event(&subscription, &format!("m:{n}"), 1_800_000_000).await, Ok(n));
    }
    // Keys within the window still get their number back after pruning has run.
    for n in [161_u64, 200, 260] {
        assert_eq!(ws.counters.number_event(&subscription, &format!("m:{n}"), 1_800_000_001).await, Ok(n));
    }
    assert_eq!(ws.counters.counter(&subscription).await.map(|c| c.events), Ok(260));
}
all_stores!(redeliveries_within_the_window_keep_their_number, remembered_window);

async fn heartbeat_index<S: Backend, T: TokenBackend, B: BindingStore, C: CounterStore, E: EventStore>(
    _: Stores<S, T>,
    ws: WsStores<B, C, E>,
) {
    let store = ws.bindings;
    // Connections spread over shards; find rows of every shard we create.
    let mut rows = Vec::new();
    for _ in 0..40 {
        let mut row = binding(&new_id(), &new_id(), "t", 1_900_000_000);
        row.heartbeat_due_at = Some(1_800_000_000);
        rows.push(row);
    }
    rows[0].heartbeat_due_at = Some(1_800_000_500); // not yet due
    rows[1].heartbeat_due_at = None; // nothing due: not in the index
    store.put_bindings(&rows).await.unwrap();
    let mut found = Vec::new();
    for shard in 0..HEARTBEAT_SHARDS {
        for row in store.due_for_heartbeat(shard, 1_800_000_100).await.unwrap() {
            assert_eq!(heartbeat_shard(&row.connection_id), shard);
            found.push(row.connection_id);
        }
    }
    for (index, row) in rows.iter().enumerate() {
        assert_eq!(found.contains(&row.connection_id), index >= 2, "row {index}");
    }
    assert_eq!(
        store.reschedule_heartbeat(&rows[2].connection_id, &rows[2].subscription_id, 1_800_000_900).await,
        Ok(true)
    );
    let shard = heartbeat_shard(&rows[2].connection_id);
    let due: Vec<String> =
        store.due_for_heartbeat(shard, 1_800_000_100).await.unwrap().into_iter().map(|r| r.connection_id).collect();
    assert!(!due.contains(&rows[2].connection_id), "rescheduled past now");
}
all_stores!(heartbeat_index_holds_only_due_bindings, heartbeat_index);

async fn by_topic<S: Backend, T: TokenBackend, B: BindingStore, C: CounterStore, E: EventStore>(
    stores: Stores<S, T>,
    _: WsStores<B, C, E>,
) {
    let topic = format!("http://example.org/topics/{}", new_id());
    let mut ids = Vec::new();
    for _ in 0..3 {
        let id = new_id();
        let mut resource = subscription(&id);
        resource.topic = Some(topic.clone());
        stores.subscriptions.insert(&StoredSubscription::new("owner", 1, at(1_800_000_000), resource)).await.unwrap();
        ids.push(id);
    }
    stores
        .subscriptions
        .insert(&StoredSubscription::new("owner", 1, at(1_800_000_000), subscription(&new_id())))
        .await
        .unwrap();
    ids.sort();
    let listed: Vec<String> =
        stores.subscriptions.list_by_topic(&topic).await.unwrap().iter().map(|s| s.id().to_owned()).collect();
    assert_eq!(listed, ids);
}
all_stores!(subscriptions_are_listed_by_topic, by_topic);

/// The routing index: only `active` subscriptions, only until their end, each in the
/// bucket it was last written with; kept right through every kind of write.
async fn by_route<S: Backend, T: TokenBackend, B: BindingStore, C: CounterStore, E: EventStore>(
    stores: Stores<S, T>,
    _: WsStores<B, C, E>,
) {
    let store = &stores.subscriptions;
    let topic = format!("http://example.org/topics/{}", new_id());
    let now = 1_800_000_000;
    let routed = |id: &str, status: &str, route: &str, end: Option<&str>| {
        let mut resource = subscription(id);
        resource.topic = Some(topic.clone());
        resource.status = serde_json::from_value(json!(status)).unwrap();
        resource.end = end.map(str::to_owned);
        StoredSubscription::new("owner", 1, at(now), resource).routed(route.to_owned())
    };
    let listed = |routes: &[&str], at: i64| {
        let routes: Vec<String> = routes.iter().map(|r| (*r).to_owned()).collect();
        let topic = topic.clone();
        async move {
            let found = store.list_by_route(&topic, &routes, at).await.unwrap();
            found.iter().map(|s| (s.id().to_owned(), s.route().to_owned())).collect::<Vec<_>>()
        }
    };
    let mut ids: Vec<String> = (0..6).map(|_| new_id()).collect();
    ids.sort();
    let [a, b, c, d, e, f] = ids.as_slice() else { unreachable!() };
    store.insert(&routed(a, "active", "patient=1", None)).await.unwrap();
    store.insert(&routed(b, "active", "patient=2", None)).await.unwrap();
    store.insert(&routed(c, "active", "*", None)).await.unwrap();
    store.insert(&routed(d, "requested", "patient=1", None)).await.unwrap();
    store.insert(&routed(e, "active", "patient=1", Some("2027-01-15T08:10:00Z"))).await.unwrap(); // ends at now + 600
    store.insert(&routed(f, "off", "*", None)).await.unwrap();
    let one = |id: &String, route: &str| (id.clone(), route.to_owned());
    assert_eq!(listed(&["patient=1"], now).await, [one(a, "patient=1"), one(e, "patient=1")]);
    assert_eq!(
        listed(&["*", "patient=1", "patient=9"], now).await,
        [one(a, "patient=1"), one(c, "*"), one(e, "patient=1")],
        "buckets read together, each subscription once; requested and off ones are not indexed"
    );
    assert_eq!(listed(&["patient=1"], now + 600).await, [one(a, "patient=1")], "ended: not read");
    assert_eq!(listed(&["patient=1", "patient=1"], now).await.len(), 2, "a bucket named twice reads once");

    // A requested subscription enters its bucket when it becomes active.
    let current = store.get(d).await.unwrap().unwrap();
    let mut resource = current.resource().clone();
    resource.status = serde_json::from_value(json!("active")).unwrap();
    store.replace(&current.next_version(resource, at(now)), 1).await.unwrap();
    assert!(listed(&["patient=1"], now).await.contains(&one(d, "patient=1")), "kept its route when activated");
    // A change of filters moves it (the writer routes it anew).
    let current = store.get(a).await.unwrap().unwrap();
    let moved = current.next_version(current.resource().clone(), at(now)).routed("patient=3".to_owned());
    store.replace(&moved, 1).await.unwrap();
    assert!(!listed(&["patient=1"], now).await.contains(&one(a, "patient=1")));
    assert_eq!(listed(&["patient=3"], now).await, [one(a, "patient=3")]);
    // off, entered-in-error and delete take it out.
    for (id, status) in [(b, Some("off")), (c, Some("entered-in-error")), (a, None)] {
        let current = store.get(id).await.unwrap().unwrap();
        match status {
            Some(status) => {
                let mut resource = current.resource().clone();
                resource.status = serde_json::from_value(json!(status)).unwrap();
                store.replace(&current.next_version(resource, at(now)), current.version()).await.unwrap();
            }
            None => assert!(store.delete(id).await.unwrap()),
        }
    }
    assert_eq!(listed(&["*", "patient=2", "patient=3"], now).await, []);
    // What comes back is the subscription as stored, route included.
    let read = store.get(e).await.unwrap().unwrap();
    assert_eq!(read.route(), "patient=1");
}
all_stores!(the_routing_index_follows_every_write, by_route);

/// A subscription's bindings in pages, and each page's delivery progress.
async fn pages_contract<S: Backend, T: TokenBackend, B: BindingStore, C: CounterStore, E: EventStore>(
    _: Stores<S, T>,
    ws: WsStores<B, C, E>,
) {
    let subscription = new_id();
    let mut connections: Vec<String> = (0..7).map(|n| format!("{subscription}-c{n}")).collect();
    connections.sort();
    let rows: Vec<Binding> = connections.iter().map(|c| binding(c, &subscription, "t", 1_800_001_800)).collect();
    ws.bindings.put_bindings(&rows).await.unwrap();
    let ids = |page: &fhir_ws_core::store::BindingsPage| {
        page.bindings.iter().map(|b| b.connection_id.clone()).collect::<Vec<_>>()
    };
    let first = ws.bindings.bindings_page(&subscription, None, None, 3).await.unwrap();
    assert_eq!((ids(&first), first.next.as_deref()), (connections[..3].to_vec(), Some(connections[2].as_str())));
    let second = ws.bindings.bindings_page(&subscription, Some(&connections[2]), None, 3).await.unwrap();
    assert_eq!(ids(&second), connections[3..6].to_vec());
    let last = ws.bindings.bindings_page(&subscription, Some(&connections[5]), None, 3).await.unwrap();
    assert_eq!((ids(&last), last.next), (connections[6..].to_vec(), None), "the last page says so");
    let exact = ws.bindings.bindings_page(&subscription, Some(&connections[3]), None, 3).await.unwrap();
    assert_eq!(exact.next, None, "a page ending on the last binding says no more follow");
    let through = ws.bindings.bindings_page(&subscription, Some(&connections[0]), Some(&connections[4]), 100).await;
    assert_eq!(ids(&through.unwrap()), connections[1..5].to_vec(), "after, through: a recorded page again");

    use fhir_ws_core::store::{PAGE_CLAIM_SECONDS, PageId, PageProgress};
    let page = PageId { subscription_id: subscription.clone(), event_number: 4, after: Some(connections[2].clone()) };
    let now = 1_800_000_000;
    assert_eq!(ws.events.claim_page(&page, now, now + 3600).await, Ok(None), "first claim: new");
    assert_eq!(ws.events.claim_page(&page, now + 1, now + 3600).await, Err(StoreError::Conflict), "held");
    ws.events.set_page_next(&page, &connections[5]).await.unwrap();
    let stale = now + PAGE_CLAIM_SECONDS + 1;
    let taken_over = PageProgress { next: Some(connections[5].clone()), finished: false, owed: vec![] };
    assert_eq!(ws.events.claim_page(&page, stale, now + 3600).await, Ok(Some(taken_over)), "a dead worker's page");
    ws.events.finish_page(&page, std::slice::from_ref(&connections[4])).await.unwrap();
    let owing = PageProgress { next: Some(connections[5].clone()), finished: true, owed: vec![connections[4].clone()] };
    assert_eq!(ws.events.claim_page(&page, stale + 1, now + 3600).await, Ok(Some(owing)), "finished, owing one");
    ws.events.finish_page(&page, &[]).await.unwrap();
    let other = PageId { after: None, ..page.clone() };
    assert_eq!(ws.events.claim_page(&other, stale + 2, now + 3600).await, Ok(None), "pages are apart");
    let done = ws.events.claim_page(&page, stale + 2, now + 3600).await.unwrap().unwrap();
    assert!(done.finished && done.owed.is_empty());
}
all_stores!(bindings_come_in_pages_and_pages_keep_their_progress, pages_contract);

/// A table written before the routing index: `reindex` routes its subscriptions, and
/// rewrites nothing the second time. In a region no other test uses (moto keeps regions
/// apart), so the table holds only what this test wrote.
#[tokio::test]
async fn dynamodb_reindex_routes_subscriptions_written_before_the_index() {
    let endpoint = std::env::var("AWS_ENDPOINT_URL_DYNAMODB").expect("run through infra/test.sh");
    let config =
        fhir_ws_tests::sdk_loader().region(aws_config::Region::new("sa-east-1")).endpoint_url(endpoint).load().await;
    let client = aws_sdk_dynamodb::Client::new(&config);
    fhir_ws_local::tables::ensure_tables(&client).await.unwrap();
    let table = "SubscriptionsTable";
    let store = fhir_ws_core::store::dynamodb::DynamoSubscriptionStore::new(client.clone(), table);
    let (topic, topics) = fhir_ws_tests::counting::encounter_complete(&new_id());
    let routed = fhir_ws_tests::counting::patient_subscription((&topic, &topics), &new_id(), 1, at(1_800_000_000));
    store.insert(&routed).await.unwrap();
    // As an older release wrote it: no route attributes.
    client
        .update_item()
        .table_name(table)
        .key("id", AttributeValue::S(routed.id().to_owned()))
        .update_expression("REMOVE routeKey, #route, routeUntil")
        .expression_attribute_names("#route", "route")
        .send()
        .await
        .unwrap();
    let route = vec![routed.route().to_owned()];
    assert!(store.list_by_route(&topic, &route, 1_800_000_000).await.unwrap().is_empty(), "not in the index");
    let (read, rewritten) = store.reindex(&topics).await.unwrap();
    assert!(read >= 1 && rewritten >= 1, "{read} read, {rewritten} rewritten");
    let found = store.list_by_route(&topic, &route, 1_800_000_000).await.unwrap();
    assert_eq!(found, [routed], "rewritten as it was, its route added");
    let (_, again) = store.reindex(&topics).await.unwrap();
    assert_eq!(again, 0, "nothing left to route");
}

/// The bindings table's TTL attribute is a Number of epoch seconds, with TTL enabled.
#[tokio::test]
async fn dynamodb_binding_ttl_is_a_number_of_epoch_seconds() {
    let ws = fhir_ws_tests::dynamodb_ws_stores().await;
    let connection = new_id();
    ws.bindings.put_bindings(&[binding(&connection, "s", "t", 1_800_001_800)]).await.unwrap();
    let key = [("connectionId", AttributeValue::S(connection)), ("subscriptionId", AttributeValue::S("s".to_owned()))];
    assert_ttl_attribute(&std::env::var("BINDINGS_TABLE").unwrap(), &key, 1_800_001_800).await;
}

fn event_record(subscription_id: &str, number: u64, expires_at: i64) -> EventRecord {
    EventRecord {
        subscription_id: subscription_id.to_owned(),
        event_number: number,
        timestamp: format!("2027-01-15T08:00:{:02}.000Z", number % 60),
        focus: Some(format!("https://fhir.example.org/Encounter/e{number}")),
        additional_context: vec!["https://fhir.example.org/Patient/p1".to_owned()],
        resources: number
            .is_multiple_of(2)
            .then(|| vec![json!({"resourceType": "Encounter", "id": format!("e{number}")})]),
        expires_at,
    }
}

/// The event history: first record of a number wins, ranges are inclusive and ascending,
/// `limit` caps, expired rows are left out by the clock, subscriptions are apart.
async fn events_contract<S: Backend, T: TokenBackend, B: BindingStore, C: CounterStore, E: EventStore>(
    _: Stores<S, T>,
    ws: WsStores<B, C, E>,
) {
    let events = ws.events;
    let (sub, other) = (new_id(), new_id());
    let now = 1_800_000_000;
    for number in 1..=12 {
        // Numbers 1 and 2 have expired by `now` (their rows are still there, as TTL is lazy).
        let expires_at = if number <= 2 { now - 1 } else { now + 3600 };
        events.record_event(&event_record(&sub, number, expires_at)).await.unwrap();
    }
    events.record_event(&event_record(&other, 5, now + 3600)).await.unwrap();
    // A redelivery with a different body changes nothing.
    let mut again = event_record(&sub, 5, now + 3600);
    again.focus = Some("https://fhir.example.org/Encounter/changed".to_owned());
    again.timestamp = "2030-01-01T00:00:00.000Z".to_owned();
    events.record_event(&again).await.unwrap();

    let numbers = |records: &[EventRecord]| records.iter().map(|r| r.event_number).collect::<Vec<_>>();
    let all = events.events(&sub, 1, 100, 100, now).await.unwrap();
    assert_eq!(numbers(&all), (3..=12).collect::<Vec<_>>(), "expired rows are not answered");
    assert_eq!(all[2], event_record(&sub, 5, now + 3600), "the first record of a number stays");
    assert_eq!(all[0].resources, None, "event 3 was recorded without resources");
    assert_eq!(all[1].resources, Some(vec![json!({"resourceType": "Encounter", "id": "e4"})]));
    assert_eq!(all[1].additional_context, ["https://fhir.example.org/Patient/p1"]);
    assert_eq!(numbers(&events.events(&sub, 4, 6, 100, now).await.unwrap()), [4, 5, 6], "inclusive");
    assert_eq!(numbers(&events.events(&sub, 1, 100, 4, now).await.unwrap()), [3, 4, 5, 6], "limit");
    assert_eq!(numbers(&events.events(&sub, 1, 2, 10, now - 10).await.unwrap()), [1, 2], "unexpired then");
    assert_eq!(events.events(&sub, 7, 6, 10, now).await.unwrap(), Vec::new(), "empty range");
    assert_eq!(numbers(&events.events(&other, 1, 100, 100, now).await.unwrap()), [5]);
    assert_eq!(events.events(&new_id(), 1, 100, 100, now).await.unwrap(), Vec::new());
}
all_stores!(event_history_is_idempotent_ordered_and_expires_by_the_clock, events_contract);

/// The events table's TTL is on `expiresAt`, a Number of epoch seconds.
#[tokio::test]
async fn dynamodb_event_ttl_is_a_number_of_epoch_seconds() {
    let ws = fhir_ws_tests::dynamodb_ws_stores().await;
    let subscription = new_id();
    ws.events.record_event(&event_record(&subscription, 1, 1_800_001_800)).await.unwrap();
    let key = [("subscriptionId", AttributeValue::S(subscription)), ("eventNumber", AttributeValue::N("1".to_owned()))];
    assert_ttl_attribute(&std::env::var("EVENTS_TABLE").unwrap(), &key, 1_800_001_800).await;
}

/// The upstream table (the relay's ledger): an event is claimed once, until confirmed
/// never again; a released claim, or one left unconfirmed past the claim window, can be
/// claimed again; `heard_from` remembers the highest number and only raises it.
async fn upstream_contract<
    S: Backend,
    T: TokenBackend,
    B: BindingStore + Clone + 'static,
    C: CounterStore + Clone,
    E: EventStore + Clone,
    U: UpstreamStore + Clone,
>(
    _stores: Stores<S, T>,
    _ws_stores: WsStores<B, C, E>,
    ledger: U,
) {
    let upstream = new_id();
    let (now, expires) = (1_800_000_000, 1_800_003_600);
    assert!(ledger.claim_event(&upstream, 1, now, expires).await.unwrap(), "first claim");
    assert!(!ledger.claim_event(&upstream, 1, now + 1, expires).await.unwrap(), "claimed a moment ago");
    ledger.confirm_event(&upstream, 1).await.unwrap();
    let much_later = now + UPSTREAM_CLAIM_SECONDS * 10;
    assert!(!ledger.claim_event(&upstream, 1, much_later, expires).await.unwrap(), "queued: never again");
    ledger.release_event(&upstream, 1).await.unwrap();
    assert!(!ledger.claim_event(&upstream, 1, much_later, expires).await.unwrap(), "a confirmed claim stays");

    assert!(ledger.claim_event(&upstream, 2, now, expires).await.unwrap());
    ledger.release_event(&upstream, 2).await.unwrap();
    assert!(ledger.claim_event(&upstream, 2, now + 1, expires).await.unwrap(), "released: claimable at once");
    let stale = now + 1 + UPSTREAM_CLAIM_SECONDS + 1;
    assert!(!ledger.claim_event(&upstream, 2, now + 2, expires).await.unwrap());
    assert!(ledger.claim_event(&upstream, 2, stale, expires).await.unwrap(), "an unconfirmed claim lapses");
    assert!(ledger.claim_event(&new_id(), 2, now, expires).await.unwrap(), "numbers are per upstream");

    let reference = "https://upstream.example.org/fhir/Subscription/a";
    assert_eq!(ledger.heard_from(&upstream, reference, None, now).await.unwrap(), None, "never heard of");
    assert_eq!(ledger.heard_from(&upstream, reference, Some(3), now).await.unwrap(), None);
    assert_eq!(ledger.heard_from(&upstream, reference, Some(5), now).await.unwrap(), Some(3));
    assert_eq!(ledger.heard_from(&upstream, reference, Some(4), now).await.unwrap(), Some(5), "a late retry");
    assert_eq!(ledger.heard_from(&upstream, reference, None, now).await.unwrap(), Some(5), "not lowered");
}
fhir_ws_tests::relay_stores!(upstream_events_are_claimed_once_and_progress_only_rises, upstream_contract);

/// The embedded store stands in for DynamoDB's TTL: a sweep at `now` deletes every
/// token, binding, event and upstream claim whose `expiresAt` has passed, and nothing
/// else (a long-running local stack must not keep every event it ever numbered).
#[tokio::test]
async fn the_memory_store_forgets_expired_items_when_swept() {
    let store = std::sync::Arc::new(fhir_ws_core::store::memory::MemoryStore::new());
    let now = 1_800_000_000;
    let (expired, alive) = (now - 1, now + 1);
    let (old_token, new_token) = (token(expired), token(alive));
    for record in [&old_token, &new_token] {
        store.put_token(record).await.unwrap();
    }
    let subscription = new_id();
    store
        .put_bindings(&[binding("c-old", &subscription, "t", expired), binding("c-new", &subscription, "t", alive)])
        .await
        .unwrap();
    for (number, expires_at) in [(1, expired), (2, alive)] {
        store.record_event(&event_record(&subscription, number, expires_at)).await.unwrap();
    }
    let upstream = new_id();
    assert!(store.claim_event(&upstream, 1, now - 10, expired).await.unwrap());
    assert!(store.claim_event(&upstream, 2, now - 10, alive).await.unwrap());
    store.confirm_event(&upstream, 1).await.unwrap();
    store.confirm_event(&upstream, 2).await.unwrap();

    assert_eq!(store.forget_expired(now), 4, "one of each kind");
    assert_eq!(store.get_token(&old_token.token_id).await, Ok(None));
    assert_eq!(store.get_token(&new_token.token_id).await, Ok(Some(new_token)));
    let connections: Vec<String> =
        store.bindings_of_subscription(&subscription).await.unwrap().into_iter().map(|b| b.connection_id).collect();
    assert_eq!(connections, ["c-new"]);
    let numbers: Vec<u64> =
        store.events(&subscription, 1, 10, 10, now - 100).await.unwrap().iter().map(|e| e.event_number).collect();
    assert_eq!(numbers, [2], "even a reader whose clock is earlier no longer finds event 1");
    assert!(store.claim_event(&upstream, 1, now, alive).await.unwrap(), "the expired claim is gone");
    assert!(!store.claim_event(&upstream, 2, now, alive).await.unwrap(), "the live confirmed claim stays");
    assert_eq!(store.forget_expired(now), 0, "a second sweep finds nothing");
}
