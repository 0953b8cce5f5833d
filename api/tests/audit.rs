//! Black-box: the auditor endpoints `GET /audit/orders/{id}/events`, `/history` and
//! `/audit/verify` on a real database: auditors only (customers and operators 403), tenant
//! isolation (another tenant's order 404), history up to a sequence or a moment, and a verify
//! report that turns dirty when an event is edited behind the engine's back.

mod common;

use commerce_api::auth::Role;
use commerce_contracts::envelope::EventEnvelope;
use common::{TENANT_A, TENANT_B, TestApp, customer, operator, problem, token};
use serde_json::{Value, json};

fn auditor(tenant: &str) -> String {
    token(tenant, "aud-1", &[Role::Auditor])
}

/// An order of `alice` in tenant A, canceled by her: two events (created, canceled).
async fn placed_and_canceled(app: &TestApp) -> String {
    let created = app
        .post("/products", &operator(TENANT_A))
        .json(&json!({"sku": "TEE", "name": "Tee", "price": {"amount_minor": 1999, "currency": "EUR"}}))
        .send()
        .await
        .expect("answered");
    assert_eq!(created.status(), 201);
    let placed = app
        .post("/orders", &customer(TENANT_A, "alice"))
        .json(&json!({"lines": [{"sku": "TEE", "quantity": 2}], "currency": "EUR"}))
        .send()
        .await
        .expect("answered");
    assert_eq!(placed.status(), 201);
    let body: Value = placed.json().await.expect("JSON");
    let id = body["id"].as_str().expect("an id").to_owned();
    let canceled = app
        .post(
            &format!("/orders/{id}/cancel"),
            &customer(TENANT_A, "alice"),
        )
        .json(&json!({"reason": "changed my mind"}))
        .send()
        .await
        .expect("answered");
    assert_eq!(canceled.status(), 200);
    id
}

async fn get(app: &TestApp, path: &str, token: &str) -> reqwest::Response {
    app.get(path)
        .bearer_auth(token)
        .send()
        .await
        .expect("answered")
}

#[tokio::test]
async fn given_an_order_when_an_auditor_reads_its_events_then_envelopes_in_sequence_order() {
    // Given an order with two events
    let app = TestApp::start().await;
    let id = placed_and_canceled(&app).await;
    // When the tenant's auditor reads its events
    let response = get(
        &app,
        &format!("/audit/orders/{id}/events"),
        &auditor(TENANT_A),
    )
    .await;
    // Then every event is listed as an envelope, in sequence order
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.expect("JSON");
    let items = body["items"].as_array().expect("items");
    assert!(items.len() >= 2, "created and canceled: {body}");
    for (index, item) in items.iter().enumerate() {
        assert_eq!(item["sequence"], index + 1);
        assert_eq!(item["aggregate_type"], "order");
        assert_eq!(item["aggregate_id"], id.as_str());
        assert_eq!(item["tenant_id"], TENANT_A);
        assert_eq!(item["topic"], "commerce.order");
        assert!(item["event_id"].is_string() && item["payload"].is_object());
        // The very shape a consumer of the Kafka topics decodes, instant and version included.
        let envelope: EventEnvelope = serde_json::from_value(item.clone())
            .unwrap_or_else(|error| panic!("not the Kafka envelope ({error}): {item}"));
        assert_eq!(envelope.event_version, 1);
        assert_eq!(envelope.occurred_at.timestamp_millis(), envelope.timestamp);
        assert_eq!(envelope.occurred_at.timestamp_subsec_micros() % 1_000, 0);
    }
    assert_eq!(items[0]["event_type"], "order.created");
}

#[tokio::test]
async fn given_an_order_when_other_roles_or_tenants_ask_then_403_or_404() {
    let app = TestApp::start().await;
    let id = placed_and_canceled(&app).await;
    for path in [
        format!("/audit/orders/{id}/events"),
        format!("/audit/orders/{id}/history"),
        "/audit/verify".to_owned(),
    ] {
        // Customers (even the owner) and operators may not audit
        for caller in [customer(TENANT_A, "alice"), operator(TENANT_A)] {
            problem(get(&app, &path, &caller).await, 403).await;
        }
        // No token at all is 401
        problem(app.get(&path).send().await.expect("answered"), 401).await;
    }
    // Another tenant's auditor does not find the order; nor does anyone find an unknown id
    for path in [
        format!("/audit/orders/{id}/events"),
        format!("/audit/orders/{id}/history"),
        "/audit/orders/00000000-0000-4000-8000-000000000000/events".to_owned(),
        "/audit/orders/not-a-uuid/history".to_owned(),
    ] {
        let caller = if path.contains(&id) {
            auditor(TENANT_B)
        } else {
            auditor(TENANT_A)
        };
        problem(get(&app, &path, &caller).await, 404).await;
    }
}

#[tokio::test]
async fn given_an_order_when_its_history_is_asked_up_to_a_sequence_or_a_moment_then_the_state_then()
{
    let app = TestApp::start().await;
    let id = placed_and_canceled(&app).await;
    let auditor = auditor(TENANT_A);

    // The full history: one entry per event, each with the state after it
    let full: Value = get(&app, &format!("/audit/orders/{id}/history"), &auditor)
        .await
        .json()
        .await
        .expect("JSON");
    let entries = full["entries"].as_array().expect("entries");
    assert!(entries.len() >= 2, "{full}");
    assert_eq!(full["version"], entries.len());
    assert!(entries.iter().all(|entry| entry["state"].is_object()));
    assert_eq!(full["state"], entries[entries.len() - 1]["state"]);
    assert_eq!(full["state"]["status"], "canceled");

    // Up to sequence 1: the order as just created
    let first: Value = get(
        &app,
        &format!("/audit/orders/{id}/history?to_seq=1"),
        &auditor,
    )
    .await
    .json()
    .await
    .expect("JSON");
    assert_eq!(first["version"], 1);
    assert_eq!(first["entries"].as_array().map(Vec::len), Some(1));
    assert_eq!(first["state"], entries[0]["state"]);
    assert_ne!(first["state"]["status"], "canceled");

    // As of the moment the first event was recorded: the same state
    let moment = entries[0]["recorded_at"].as_str().expect("a time");
    let as_of: Value = app
        .get(&format!("/audit/orders/{id}/history"))
        .bearer_auth(&auditor)
        .query(&[("as_of", moment)])
        .send()
        .await
        .expect("answered")
        .json()
        .await
        .expect("JSON");
    assert_eq!(as_of["version"], 1, "{as_of}");
    assert_eq!(as_of["state"], entries[0]["state"]);

    // As of a sequence, the contract's other form of `as_of`: the same as `to_seq`
    let as_of_sequence: Value = get(
        &app,
        &format!("/audit/orders/{id}/history?as_of=1"),
        &auditor,
    )
    .await
    .json()
    .await
    .expect("JSON");
    assert_eq!(as_of_sequence, first);

    // Both bounds at once, or a malformed one, are refused
    problem(
        app.get(&format!("/audit/orders/{id}/history"))
            .bearer_auth(&auditor)
            .query(&[("as_of", moment), ("to_seq", "1")])
            .send()
            .await
            .expect("answered"),
        422,
    )
    .await;
    let malformed = get(
        &app,
        &format!("/audit/orders/{id}/history?to_seq=soon"),
        &auditor,
    )
    .await;
    assert_eq!(malformed.status(), 400);
    for nonsense in ["soon", "", "99999999999999999999999"] {
        problem(
            app.get(&format!("/audit/orders/{id}/history"))
                .bearer_auth(&auditor)
                .query(&[("as_of", nonsense)])
                .send()
                .await
                .expect("answered"),
            422,
        )
        .await;
    }
}

#[tokio::test]
async fn given_a_clean_log_when_verified_then_clean_and_after_an_edit_then_the_damage_is_named() {
    let app = TestApp::start().await;
    let id = placed_and_canceled(&app).await;
    let auditor = auditor(TENANT_A);

    // A clean log
    let report: Value = get(&app, "/audit/verify", &auditor)
        .await
        .json()
        .await
        .expect("JSON");
    assert_eq!(report["clean"], true, "{report}");
    assert!(report["events"].as_u64().is_some_and(|events| events >= 3));
    assert_eq!(report["damage"], json!([]));

    // An attacker with database rights edits the order's first event
    let mut tx = app.db.pool().begin().await.expect("begin");
    sqlx::query("SET LOCAL session_replication_role = replica")
        .execute(&mut *tx)
        .await
        .expect("bypass the append-only triggers");
    sqlx::query(
        "UPDATE events SET payload = jsonb_set(payload, '{customer_id}', '\"mallory\"') \
         WHERE aggregate_type = 'order' AND aggregate_id = $1 AND sequence = 1",
    )
    .bind(format!("{TENANT_A}/{id}"))
    .execute(&mut *tx)
    .await
    .expect("tampered");
    tx.commit().await.expect("commit");

    // Then verification names the stream and the sequence
    let report: Value = get(&app, "/audit/verify", &auditor)
        .await
        .json()
        .await
        .expect("JSON");
    assert_eq!(report["clean"], false, "{report}");
    let damage = &report["damage"][0];
    assert_eq!(damage["stream"], format!("order {TENANT_A}/{id}"));
    assert_eq!(damage["sequence"], 1);
    assert_eq!(damage["kind"], "altered");
    assert_eq!(report["other_tenants_damage"], 0);

    // And another tenant's auditor learns that the log is damaged, not where in tenant A
    let other_auditor = self::auditor(TENANT_B);
    let report: Value = get(&app, "/audit/verify", &other_auditor)
        .await
        .json()
        .await
        .expect("JSON");
    assert_eq!(report["clean"], false, "{report}");
    assert_eq!(report["damage"], json!([]), "{report}");
    assert_eq!(report["other_tenants_damage"], 1);
    assert!(!report.to_string().contains(&id), "{report}");
}

#[tokio::test]
async fn given_an_order_when_replayed_from_the_cli_without_a_tenant_then_its_tenant_is_found() {
    let app = TestApp::start().await;
    let id = placed_and_canceled(&app).await;
    let replay = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_commerce"))
            .arg("replay")
            .args(args)
            .env("DATABASE_URL", app.db.url())
            .output()
            .expect("the binary runs")
    };

    // The contract's form: `commerce replay order <id> [--json]`
    let found = replay(&["order", &id, "--json"]);
    assert!(
        found.status.success(),
        "{}",
        String::from_utf8_lossy(&found.stderr)
    );
    let history: Value = serde_json::from_slice(&found.stdout).expect("JSON");
    assert_eq!(
        history["entries"][0]["event_type"], "order.created",
        "{history}"
    );

    // An id no tenant has is named
    let unknown = uuid::Uuid::new_v4().to_string();
    let missing = replay(&["order", &unknown]);
    assert!(!missing.status.success());
    assert!(
        String::from_utf8_lossy(&missing.stderr).contains(&unknown),
        "{}",
        String::from_utf8_lossy(&missing.stderr)
    );
}
