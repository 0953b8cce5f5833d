//! Golden JSON fixtures of the published language, under `tests/fixtures/`:
//! `<event_type>.json` for every event payload, `envelopes/<aggregate_type>.json` for one
//! envelope per aggregate topic, and `analytics/*.json` for the analyst records.
//!
//! Each fixture must decode into its type and encode back to the same JSON: a renamed field,
//! a changed enum spelling or a new required field breaks a test here before it breaks a
//! consumer. Every event in the catalog must have a fixture, and every fixture must name an
//! event of the catalog.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use commerce_contracts::events::{
    CampaignEvent, InventoryEvent, OrderEvent, PaymentEvent, ProductEvent, ShipmentEvent,
};
use commerce_contracts::{
    AnalyticsOrder, AnalyticsOrderLine, EventDescriptor, EventEnvelope, EventSet, topics,
};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

fn fixtures_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn read_json(path: &Path) -> Value {
    let text = fs::read_to_string(path)
        .unwrap_or_else(|error| panic!("{}: cannot read fixture: {error}", path.display()));
    serde_json::from_str(&text)
        .unwrap_or_else(|error| panic!("{}: not JSON: {error}", path.display()))
}

/// Decodes `fixture` as `T` and encodes it again.
fn round_trip<T: Serialize + DeserializeOwned>(fixture: &Value, name: &str) -> (T, Value) {
    let typed: T = serde_json::from_value(fixture.clone())
        .unwrap_or_else(|error| panic!("{name}: fixture does not decode: {error}"));
    let encoded = serde_json::to_value(&typed).expect("a contract type always encodes");
    (typed, encoded)
}

/// Round-trips an event fixture through its aggregate's enum and checks its catalog facts.
fn check_event<E: EventSet + Serialize + DeserializeOwned>(
    event: &EventDescriptor,
    fixture: &Value,
) {
    let (typed, encoded) = round_trip::<E>(fixture, event.event_type);
    assert_eq!(
        &encoded, fixture,
        "{}: round trip changed the JSON",
        event.event_type
    );
    assert_eq!(typed.event_type(), event.event_type);
    assert_eq!(typed.event_version(), event.event_version);
}

fn check_event_by_aggregate(event: &EventDescriptor, fixture: &Value) {
    match event.aggregate_type {
        "order" => check_event::<OrderEvent>(event, fixture),
        "inventory" => check_event::<InventoryEvent>(event, fixture),
        "campaign" => check_event::<CampaignEvent>(event, fixture),
        "payment" => check_event::<PaymentEvent>(event, fixture),
        "product" => check_event::<ProductEvent>(event, fixture),
        "shipment" => check_event::<ShipmentEvent>(event, fixture),
        other => panic!("{}: unknown aggregate type {other}", event.event_type),
    }
}

#[test]
fn every_event_fixture_round_trips_through_its_aggregate_enum() {
    for event in topics::event_catalog() {
        // given the golden fixture of the event
        let fixture = read_json(&fixtures_dir().join(format!("{}.json", event.event_type)));
        // when decoded and encoded again, then nothing changed
        check_event_by_aggregate(&event, &fixture);
    }
}

#[test]
fn every_event_fixture_sets_every_field_of_its_schema() {
    let schemas = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("schemas/events");
    for event in topics::event_catalog() {
        let fixture = read_json(&fixtures_dir().join(format!("{}.json", event.event_type)));
        let schema = read_json(&schemas.join(format!(
            "{}.v{}.json",
            event.event_type, event.event_version
        )));
        let declared: BTreeSet<&String> = schema["properties"]
            .as_object()
            .expect("an event schema has properties")
            .keys()
            .collect();
        let present: BTreeSet<&String> = fixture
            .as_object()
            .expect("an event fixture is an object")
            .keys()
            .collect();
        assert_eq!(
            present, declared,
            "{}: fixture fields vs schema",
            event.event_type
        );
    }
}

#[test]
fn every_fixture_names_a_known_event() {
    let known: BTreeSet<String> = topics::event_catalog()
        .iter()
        .map(|event| format!("{}.json", event.event_type))
        .collect();
    for entry in fs::read_dir(fixtures_dir()).expect("fixtures folder exists") {
        let entry = entry.expect("readable entry");
        if entry.file_type().expect("file type").is_file() {
            let name = entry.file_name().to_string_lossy().into_owned();
            assert!(known.contains(&name), "stale fixture {name}: no such event");
        }
    }
}

fn check_envelope<E: EventSet + Serialize + DeserializeOwned + PartialEq + std::fmt::Debug>() {
    // given the envelope fixture of the aggregate topic
    let aggregate_type = E::AGGREGATE_TYPE;
    let name = format!("envelopes/{aggregate_type}.json");
    let fixture = read_json(&fixtures_dir().join(&name));
    // when decoded as a typed envelope and encoded again
    let (typed, encoded) = round_trip::<EventEnvelope<E>>(&fixture, &name);
    // then the JSON is unchanged and the bookkeeping agrees with the payload
    assert_eq!(encoded, fixture, "{name}: round trip changed the JSON");
    assert_eq!(typed.topic, topics::aggregate_topic(aggregate_type));
    assert_eq!(typed.aggregate_type, aggregate_type);
    assert_eq!(typed.event_type, typed.payload.event_type());
    assert_eq!(typed.event_version, typed.payload.event_version());
    assert_eq!(typed.timestamp, typed.occurred_at.timestamp_millis());
    // and an untyped consumer decodes the same envelope
    let untyped: EventEnvelope = serde_json::from_value(fixture.clone()).expect("decodes");
    assert_eq!(untyped.decode::<E>().expect("payload decodes"), typed);
}

#[test]
fn every_envelope_fixture_round_trips() {
    check_envelope::<OrderEvent>();
    check_envelope::<InventoryEvent>();
    check_envelope::<CampaignEvent>();
    check_envelope::<PaymentEvent>();
    check_envelope::<ProductEvent>();
    check_envelope::<ShipmentEvent>();
}

#[test]
fn an_envelope_with_a_foreign_payload_does_not_decode() {
    let fixture = read_json(&fixtures_dir().join("envelopes/order.json"));
    let untyped: EventEnvelope = serde_json::from_value(fixture).expect("decodes");
    assert!(untyped.decode::<PaymentEvent>().is_err());
}

#[test]
fn analytics_fixtures_round_trip() {
    let orders = read_json(&fixtures_dir().join("analytics/orders.json"));
    let (order, encoded) = round_trip::<AnalyticsOrder>(&orders, "analytics/orders.json");
    assert_eq!(encoded, orders);
    assert_eq!(order.record_key(), "0195a1b2-c3d4-7e5f-8a6b-00000000001a");

    let lines = read_json(&fixtures_dir().join("analytics/order_lines.json"));
    let (line, encoded) = round_trip::<AnalyticsOrderLine>(&lines, "analytics/order_lines.json");
    assert_eq!(encoded, lines);
    assert_eq!(line.record_key(), "0195a1b2-c3d4-7e5f-8a6b-00000000001a:1");
}
