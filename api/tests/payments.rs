//! Black-box: `POST /payments/{id}/refund` and `POST /payments/webhooks/{provider}`: success,
//! idempotent replay (B12), refusals (roles, other tenants B7, bad ids B14, bad signatures),
//! each refusal leaving the event store unchanged.

mod common;

use chrono::Utc;
use commerce_aggregates::payment::{CreatePayment, Payment, PaymentCommand};
use commerce_api::webhooks::sign;
use commerce_contracts::events::{CapturePolicy, PaymentPurpose};
use commerce_domain::{Currency, CustomerId, Money, PaymentId};
use commerce_eventstore::{CommandContext, CommandExecutor, EventMetadata, PgEventStore, StreamId};
use common::{TENANT_A, TENANT_B, TestApp, WEBHOOK_SECRET, customer, operator, problem};
use serde_json::{Value, json};
use uuid::Uuid;

/// A captured payment of 10.00 EUR in tenant `acme`, written through the write model (payments
/// are opened by the order workflow, not by an endpoint).
async fn captured_payment(app: &TestApp) -> PaymentId {
    payment_through(
        app,
        "pm_card_ok",
        vec![PaymentCommand::RecordCharge {
            provider_ref: "sandbox_ch_1".to_owned(),
            at: Utc::now(),
        }],
    )
    .await
}

/// A 10.00 EUR payment of tenant `acme` that waited for 3-D Secure (`sandbox_3ds_1`) and was
/// voided with nothing captured, as the compensation of a canceled order leaves it.
async fn voided_payment(app: &TestApp) -> PaymentId {
    payment_through(
        app,
        "pm_card_requires_action",
        vec![
            PaymentCommand::RecordRequiresAction {
                provider_ref: "sandbox_3ds_1".to_owned(),
                at: Utc::now(),
            },
            PaymentCommand::Void {
                reason: "order_canceled".to_owned(),
                at: Utc::now(),
            },
        ],
    )
    .await
}

/// A new 10.00 EUR payment paid with `method`, then `later` applied to it.
async fn payment_through(app: &TestApp, method: &str, later: Vec<PaymentCommand>) -> PaymentId {
    let executor = CommandExecutor::<Payment>::new(PgEventStore::new(app.db.pool().clone()), ());
    let payment_id = PaymentId::new();
    let stream = StreamId::new(TENANT_A, payment_id.to_string()).expect("valid stream");
    let eur = Currency::from_code("EUR").expect("known currency");
    let create = PaymentCommand::Create(CreatePayment {
        payment_id,
        purpose: PaymentPurpose::Order {
            order_id: Uuid::new_v4(),
        },
        customer: CustomerId::new("alice").expect("valid"),
        amount: Money::new(1000, eur),
        method: method.to_owned(),
        provider: "sandbox".to_owned(),
        capture_policy: CapturePolicy::Automatic,
        at: Utc::now(),
    });
    for command in std::iter::once(create).chain(later) {
        let context = CommandContext::new(EventMetadata::new(TENANT_A, "workflow"));
        executor
            .execute(stream.clone(), command, context)
            .await
            .expect("accepted");
    }
    payment_id
}

/// Delivers `event` to the sandbox webhook, signed; returns the status and the body.
async fn deliver(app: &TestApp, event: &Value) -> (u16, Value) {
    let body = event.to_string();
    let response = app
        .client
        .post(app.url("/payments/webhooks/sandbox"))
        .header("content-type", "application/json")
        .header("x-webhook-signature", sign(WEBHOOK_SECRET, body.as_bytes()))
        .body(body)
        .send()
        .await
        .expect("answered");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or_default())
}

/// `provider_orphans` rows: provider event, payment, provider reference, captured minor units,
/// currency, settled.
async fn orphans(app: &TestApp) -> Vec<(String, Uuid, String, Option<i64>, String, bool)> {
    sqlx::query_as(
        "SELECT provider_event_id, payment_id, provider_ref, captured_minor, currency, \
                settled_at IS NOT NULL \
         FROM provider_orphans ORDER BY provider_event_id",
    )
    .fetch_all(app.db.pool())
    .await
    .expect("orphans")
}

fn refund(amount: i64) -> Value {
    json!({"amount": {"amount_minor": amount, "currency": "EUR"}, "reason": "damaged"})
}

#[tokio::test]
async fn given_a_captured_payment_when_an_operator_refunds_then_202_and_replays_are_identical() {
    let app = TestApp::start().await;
    let payment = captured_payment(&app).await;
    let path = format!("/payments/{payment}/refund");
    let before = app.event_count().await;

    let first = app
        .post(&path, &operator(TENANT_A))
        .header("idempotency-key", "refund-1")
        .json(&refund(300))
        .send()
        .await
        .expect("answered");
    assert_eq!(first.status(), 202);
    assert!(first.headers().contains_key("consistency-token"));
    let first_body = first.bytes().await.expect("body");
    let parsed: Value = serde_json::from_slice(&first_body).expect("JSON");
    assert_eq!(parsed["payment_id"], payment.to_string());
    assert_eq!(
        parsed["amount"],
        json!({"amount_minor": 300, "currency": "EUR"})
    );
    let after_first = app.event_count().await;
    assert_eq!(after_first, before + 1);

    // B12: the same key and body replay the first response without new events
    let replay = app
        .post(&path, &operator(TENANT_A))
        .header("idempotency-key", "refund-1")
        .json(&refund(300))
        .send()
        .await
        .expect("answered");
    assert_eq!(replay.status(), 202);
    assert_eq!(replay.headers()["idempotent-replayed"], "true");
    assert_eq!(replay.bytes().await.expect("body"), first_body);
    assert_eq!(app.event_count().await, after_first);

    // ... and the same key with another body is a conflict
    let reused = app
        .post(&path, &operator(TENANT_A))
        .header("idempotency-key", "refund-1")
        .json(&refund(301))
        .send()
        .await
        .expect("answered");
    let body = problem(reused, 409).await;
    assert_eq!(body["type"], "/problems/idempotency-key-reused");
    assert_eq!(app.event_count().await, after_first);
}

#[tokio::test]
async fn given_refunds_that_may_not_happen_when_sent_then_refused_without_events() {
    let app = TestApp::start().await;
    let payment = captured_payment(&app).await;
    let path = format!("/payments/{payment}/refund");
    let before = app.event_count().await;

    // More than was captured: the aggregate refuses it
    let response = app
        .post(&path, &operator(TENANT_A))
        .json(&refund(5000))
        .send()
        .await
        .expect("answered");
    let status = response.status().as_u16();
    assert!(status == 409 || status == 422, "refused: {status}");
    problem(response, status).await;
    // Zero, negative, float, wrong currency, unknown currency
    for body in [
        refund(0),
        refund(-5),
        json!({"amount": {"amount_minor": 1.5, "currency": "EUR"}, "reason": "x"}),
        json!({"amount": {"amount_minor": 100, "currency": "USD"}, "reason": "x"}),
        json!({"amount": {"amount_minor": 100, "currency": "XXZ"}, "reason": "x"}),
        json!({"amount": {"amount_minor": 100, "currency": "EUR"}, "reason": ""}),
        json!({"amount": {"amount_minor": 100, "currency": "EUR"}, "reason": "x", "status": "refunded"}),
    ] {
        let response = app
            .post(&path, &operator(TENANT_A))
            .json(&body)
            .send()
            .await
            .expect("answered");
        problem(response, 422).await;
    }
    // A customer may not refund
    let response = app
        .post(&path, &customer(TENANT_A, "alice"))
        .json(&refund(100))
        .send()
        .await
        .expect("answered");
    problem(response, 403).await;
    // B7: another tenant's operator does not find it
    let response = app
        .post(&path, &operator(TENANT_B))
        .json(&refund(100))
        .send()
        .await
        .expect("answered");
    problem(response, 404).await;
    // B14: ids that are not UUIDs name nothing
    for id in [
        "1%27%20OR%201%3D1%20--",
        "..%2F..%2Fetc",
        &"9".repeat(300),
        "%C3%BC",
    ] {
        let response = app
            .post(&format!("/payments/{id}/refund"), &operator(TENANT_A))
            .json(&refund(100))
            .send()
            .await
            .expect("answered");
        let status = response.status().as_u16();
        assert!(status == 404 || status == 400, "{id}: {status}");
        let body = problem(response, status).await;
        assert!(!body.to_string().to_lowercase().contains("sql"), "{body}");
    }
    assert_eq!(
        app.event_count().await,
        before,
        "no refusal appended an event"
    );
}

#[tokio::test]
async fn given_signed_provider_events_when_delivered_then_applied_once() {
    let app = TestApp::start().await;
    let payment = captured_payment(&app).await;
    let response = app
        .post(&format!("/payments/{payment}/refund"), &operator(TENANT_A))
        .json(&refund(200))
        .send()
        .await
        .expect("answered");
    let refund_id = response.json::<Value>().await.expect("JSON")["refund_id"].clone();
    let event = json!({
        "provider_event_id": "evt_1",
        "tenant_id": TENANT_A,
        "payment_id": payment.to_string(),
        "kind": "refund_succeeded",
        "refund_id": refund_id,
    });
    let body = event.to_string();
    let deliver = |body: String, signature: String| {
        app.client
            .post(app.url("/payments/webhooks/sandbox"))
            .header("content-type", "application/json")
            .header("x-webhook-signature", signature)
            .body(body)
            .send()
    };
    let before = app.event_count().await;
    let response = deliver(body.clone(), sign(WEBHOOK_SECRET, body.as_bytes()))
        .await
        .expect("answered");
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.json::<Value>().await.expect("JSON")["applied"],
        true
    );
    let applied = app.event_count().await;
    assert!(applied > before);

    // A redelivery changes nothing
    let response = deliver(body.clone(), sign(WEBHOOK_SECRET, body.as_bytes()))
        .await
        .expect("answered");
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.json::<Value>().await.expect("JSON")["applied"],
        false
    );
    assert_eq!(app.event_count().await, applied);

    // Forged, unsigned or misdirected deliveries are refused
    let response = deliver(body.clone(), sign(b"wrong-secret", body.as_bytes()))
        .await
        .expect("answered");
    problem(response, 401).await;
    let response = deliver(body.clone(), String::new())
        .await
        .expect("answered");
    problem(response, 401).await;
    let other_tenant = event.to_string().replace(TENANT_A, "initech");
    let response = deliver(
        other_tenant.clone(),
        sign(WEBHOOK_SECRET, other_tenant.as_bytes()),
    )
    .await
    .expect("answered");
    problem(response, 404).await;
    let response = app
        .client
        .post(app.url("/payments/webhooks/unknown"))
        .header("content-type", "application/json")
        .header("x-webhook-signature", sign(WEBHOOK_SECRET, body.as_bytes()))
        .body(body.clone())
        .send()
        .await
        .expect("answered");
    problem(response, 404).await;
    assert_eq!(app.event_count().await, applied);
}

#[tokio::test]
async fn given_a_voided_payment_when_the_provider_reports_taking_money_then_it_is_kept_to_give_back()
 {
    let app = TestApp::start().await;
    commerce_workflows::migrate(app.db.pool())
        .await
        .expect("workflow schema");
    let voided = voided_payment(&app).await;
    let captured = captured_payment(&app).await;
    let before = app.event_count().await;
    let late_capture = json!({
        "provider_event_id": "evt_late_capture",
        "tenant_id": TENANT_A,
        "payment_id": voided.to_string(),
        "kind": "succeeded",
    });
    let late_hold = json!({
        "provider_event_id": "evt_late_hold",
        "tenant_id": TENANT_A,
        "payment_id": voided.to_string(),
        "kind": "authorized",
        "provider_ref": "sandbox_3ds_2",
    });

    // when: the provider says it captured, twice (a redelivery), and that it holds money
    for event in [&late_capture, &late_capture, &late_hold] {
        let (status, body) = deliver(&app, event).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["applied"], false);
    }
    // and: a success on a payment the engine captured itself is only a redelivery
    let (status, _) = deliver(
        &app,
        &json!({
            "provider_event_id": "evt_known_capture",
            "tenant_id": TENANT_A,
            "payment_id": captured.to_string(),
            "kind": "succeeded",
        }),
    )
    .await;
    assert_eq!(status, 200);

    // then: the closed payment took no event (PAY-9), and the money is kept to give back,
    // once per provider event
    assert_eq!(app.event_count().await, before);
    let eur = "EUR".to_owned();
    assert_eq!(
        orphans(&app).await,
        vec![
            (
                "evt_late_capture".to_owned(),
                voided.as_uuid(),
                "sandbox_3ds_1".to_owned(),
                Some(1000),
                eur.clone(),
                false
            ),
            (
                "evt_late_hold".to_owned(),
                voided.as_uuid(),
                "sandbox_3ds_2".to_owned(),
                None,
                eur,
                false
            ),
        ]
    );
}
