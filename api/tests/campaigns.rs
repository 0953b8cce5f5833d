//! Black-box: `POST /campaigns` and `POST /campaigns/{id}/join`: creation, joining, idempotent
//! replay (B12), refusals (B3, B5, B7, B8, roles) without events.

mod common;

use chrono::{Duration, Utc};
use common::{TENANT_A, TENANT_B, TestApp, customer, operator, problem};
use serde_json::{Value, json};

async fn product(app: &TestApp, tenant: &str, sku: &str) {
    let response = app
        .post("/products", &operator(tenant))
        .json(&json!({"sku": sku, "name": sku, "price": {"amount_minor": 1999, "currency": "EUR"}}))
        .send()
        .await
        .expect("answered");
    assert_eq!(response.status(), 201);
}

fn campaign(sku: &str, starts_in: Duration) -> Value {
    let start = Utc::now() + starts_in;
    json!({
        "sku": sku,
        "min_participants": 2,
        "max_participants": 10,
        "group_price": {"amount_minor": 1500, "currency": "EUR"},
        "original_price": {"amount_minor": 1999, "currency": "EUR"},
        "start_time": start,
        "end_time": start + Duration::days(1),
        "per_customer_limit": 2,
    })
}

async fn create(app: &TestApp, body: &Value) -> Value {
    let response = app
        .post("/campaigns", &operator(TENANT_A))
        .json(body)
        .send()
        .await
        .expect("answered");
    assert_eq!(response.status(), 201);
    response.json().await.expect("JSON")
}

#[tokio::test]
async fn given_a_product_when_campaigns_are_created_then_running_ones_are_active_and_future_ones_scheduled()
 {
    let app = TestApp::start().await;
    product(&app, TENANT_A, "TEE").await;
    let running = create(&app, &campaign("TEE", -Duration::minutes(1))).await;
    assert_eq!(running["status"], "active");
    let later = create(&app, &campaign("TEE", Duration::hours(1))).await;
    assert_eq!(later["status"], "scheduled");
    assert_ne!(running["id"], later["id"]);
}

#[tokio::test]
async fn given_invalid_campaigns_when_created_then_refused_without_events() {
    let app = TestApp::start().await;
    product(&app, TENANT_A, "TEE").await;
    let before = app.event_count().await;
    let mut reversed = campaign("TEE", Duration::zero());
    reversed["end_time"] = json!(Utc::now() - Duration::days(1));
    let mut min_over_max = campaign("TEE", Duration::zero());
    min_over_max["min_participants"] = json!(20);
    let mut float_price = campaign("TEE", Duration::zero());
    float_price["group_price"]["amount_minor"] = json!(15.5);
    let mut mass = campaign("TEE", Duration::zero());
    mass["status"] = json!("successful");
    let mut bad_time = campaign("TEE", Duration::zero());
    bad_time["start_time"] = json!("yesterday");
    for body in [reversed, min_over_max, float_price, mass, bad_time] {
        let response = app
            .post("/campaigns", &operator(TENANT_A))
            .json(&body)
            .send()
            .await
            .expect("answered");
        problem(response, 422).await;
    }
    for body in [campaign("NOPE", Duration::zero()), {
        let mut other = campaign("TEE", Duration::zero());
        other["group_price"]["currency"] = json!("USD");
        other
    }] {
        let response = app
            .post("/campaigns", &operator(TENANT_A))
            .json(&body)
            .send()
            .await
            .expect("answered");
        let status = response.status().as_u16();
        assert!(matches!(status, 404 | 409 | 422), "refused: {status}");
        problem(response, status).await;
    }
    let response = app
        .post("/campaigns", &customer(TENANT_A, "alice"))
        .json(&campaign("TEE", Duration::zero()))
        .send()
        .await
        .expect("answered");
    problem(response, 403).await;
    assert_eq!(app.event_count().await, before);
}

#[tokio::test]
async fn given_an_active_campaign_when_customers_join_then_200_and_replays_are_identical() {
    let app = TestApp::start().await;
    product(&app, TENANT_A, "TEE").await;
    let created = create(&app, &campaign("TEE", -Duration::minutes(1))).await;
    let id = created["id"].as_str().expect("id").to_owned();
    let path = format!("/campaigns/{id}/join");
    let before = app.event_count().await;

    let send = || {
        app.post(&path, &customer(TENANT_A, "alice"))
            .header("idempotency-key", "join-1")
            .json(&json!({"quantity": 1, "payment_method": "pm_card_ok"}))
            .send()
    };
    let first = send().await.expect("answered");
    assert_eq!(first.status(), 200);
    let first_body = first.bytes().await.expect("body");
    let joined: Value = serde_json::from_slice(&first_body).expect("JSON");
    assert_eq!(joined["campaign_id"], id.as_str());
    assert_eq!(joined["status"], "joined");
    let after = app.event_count().await;
    assert!(after > before);
    let replay = send().await.expect("answered");
    assert_eq!(replay.bytes().await.expect("body"), first_body);
    assert_eq!(app.event_count().await, after);

    // Refusals: operators do not join, other tenants do not find it, bad ids and quantities
    let refusals = [
        (app.post(&path, &operator(TENANT_A)).json(&json!({})), 403),
        (
            app.post(&path, &customer(TENANT_B, "bob")).json(&json!({})),
            404,
        ),
        (
            app.post("/campaigns/not-a-uuid/join", &customer(TENANT_A, "bob"))
                .json(&json!({})),
            404,
        ),
        (
            app.post(&path, &customer(TENANT_A, "bob"))
                .json(&json!({"quantity": 0})),
            422,
        ),
        (
            app.post(&path, &customer(TENANT_A, "bob"))
                .json(&json!({"quantity": -1})),
            422,
        ),
        (
            app.post(&path, &customer(TENANT_A, "bob"))
                .json(&json!({"customer_id": "alice"})),
            422,
        ),
    ];
    for (request, status) in refusals {
        problem(request.send().await.expect("answered"), status).await;
    }
    assert_eq!(app.event_count().await, after);

    // A scheduled campaign cannot be joined yet
    let later = create(&app, &campaign("TEE", Duration::hours(1))).await;
    let before_join = app.event_count().await;
    let response = app
        .post(
            &format!("/campaigns/{}/join", later["id"].as_str().expect("id")),
            &customer(TENANT_A, "bob"),
        )
        .json(&json!({}))
        .send()
        .await
        .expect("answered");
    problem(response, 409).await;
    assert_eq!(app.event_count().await, before_join);
}
