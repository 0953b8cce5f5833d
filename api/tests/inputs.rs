//! Black-box: bad inputs on command endpoints (B1–B5, B8, B13, B14 of the bad-input matrix).
//! Every refusal is problem+json and leaves the event store unchanged.

mod common;

use std::num::NonZeroU32;
use std::time::Duration;

use commerce_api::limits::Limits;
use common::{TENANT_A, TENANT_B, TestApp, operator, problem, retry_after};
use serde_json::json;

#[tokio::test]
async fn given_malformed_bodies_when_setting_stock_then_400_415_422_413() {
    let app = TestApp::start().await;
    let token = operator(TENANT_A);
    let before = app.event_count().await;

    // B1: malformed JSON
    let response = app
        .put("/inventory", &token)
        .header("content-type", "application/json")
        .body("{\"sku\": \"A\", ")
        .send()
        .await
        .expect("answered");
    problem(response, 400).await;

    // B2: missing and wrong content type
    let response = app
        .put("/inventory", &token)
        .body("{\"sku\":\"A\",\"quantity\":1}")
        .send()
        .await
        .expect("answered");
    problem(response, 415).await;
    let response = app
        .put("/inventory", &token)
        .header("content-type", "text/plain")
        .body("{\"sku\":\"A\",\"quantity\":1}")
        .send()
        .await
        .expect("answered");
    problem(response, 415).await;

    // B3: wrong shape, unknown field, missing field
    for body in [
        json!({"sku": 5, "quantity": 1}),
        json!({"sku": "A", "quantity": 1, "extra": true}),
        json!({"sku": "A"}),
        json!([1, 2, 3]),
    ] {
        let response = app
            .put("/inventory", &token)
            .json(&body)
            .send()
            .await
            .expect("answered");
        let problem = problem(response, 422).await;
        assert!(
            problem["errors"].is_array(),
            "field errors listed: {problem}"
        );
    }

    // B4: over the body limit (64 KiB + 1)
    let huge = format!(
        "{{\"sku\":\"A\",\"quantity\":1,\"location\":\"{}\"}}",
        "x".repeat(64 * 1024)
    );
    let response = app
        .put("/inventory", &token)
        .header("content-type", "application/json")
        .body(huge)
        .send()
        .await
        .expect("answered");
    problem(response, 413).await;

    // B5: negative, huge and fractional quantities, bad SKU
    for body in [
        json!({"sku": "A", "quantity": -1}),
        json!({"sku": "A", "quantity": 1.5}),
        json!({"sku": "A", "quantity": u64::MAX}),
        json!({"sku": "A", "quantity": 1e30}),
        json!({"sku": "../etc/passwd", "quantity": 1}),
        json!({"sku": "' OR 1=1 --", "quantity": 1}),
        json!({"sku": "ü".repeat(70), "quantity": 1}),
    ] {
        let response = app
            .put("/inventory", &token)
            .json(&body)
            .send()
            .await
            .expect("answered");
        let body = problem(response, 422).await;
        assert!(
            !body.to_string().to_lowercase().contains("sql"),
            "no internal text: {body}"
        );
    }

    // B8: mass assignment of server-owned fields
    let response = app
        .put("/inventory", &token)
        .json(&json!({"sku": "A", "quantity": 1, "tenant_id": TENANT_B}))
        .send()
        .await
        .expect("answered");
    problem(response, 422).await;

    assert_eq!(
        app.event_count().await,
        before,
        "no refusal appended an event"
    );
}

#[tokio::test]
async fn given_unknown_routes_and_methods_when_called_then_problem_json() {
    let app = TestApp::start().await;
    let response = app.get("/no/such/route").send().await.expect("answered");
    problem(response, 404).await;
    let response = app.get("/inventory").send().await.expect("answered");
    problem(response, 405).await;
}

#[tokio::test]
async fn given_a_tenant_over_its_rate_when_it_bursts_then_429_and_other_tenants_are_served() {
    let limits = Limits {
        tenant_rate_per_second: NonZeroU32::MIN,
        tenant_burst: NonZeroU32::new(5).expect("non-zero"),
        ..Limits::default()
    };
    let app = TestApp::start_with(limits).await;
    let noisy = operator(TENANT_A);
    let quiet = operator(TENANT_B);
    let mut limited = None;
    for attempt in 0..20 {
        let response = app
            .put("/inventory", &noisy)
            .json(&json!({"sku": "A", "quantity": attempt}))
            .send()
            .await
            .expect("answered");
        if response.status() == 429 {
            limited = Some(response);
            break;
        }
    }
    let response = limited.expect("the burst is limited");
    let retry = retry_after(&response);
    problem(response, 429).await;
    assert!(retry.is_some(), "Retry-After is set");

    let response = app
        .put("/inventory", &quiet)
        .json(&json!({"sku": "A", "quantity": 1}))
        .send()
        .await
        .expect("answered");
    assert_eq!(response.status(), 204, "another tenant is not slowed");
}

#[tokio::test]
async fn given_a_correlation_id_when_commanding_then_it_is_echoed_and_stored_in_event_metadata() {
    let app = TestApp::start().await;
    let correlation = "7d3b6c1e-2f4a-4e5b-9c8d-0a1b2c3d4e5f";
    let response = app
        .put("/inventory", &operator(TENANT_A))
        .header("x-correlation-id", correlation)
        .json(&json!({"sku": "CORR-1", "quantity": 3}))
        .send()
        .await
        .expect("answered");
    assert_eq!(response.status(), 204);
    assert_eq!(response.headers()["x-correlation-id"], correlation);
    assert!(response.headers().contains_key("consistency-token"));
    let stored: Vec<String> = sqlx::query_scalar("SELECT metadata->>'correlation_id' FROM events")
        .fetch_all(app.db.pool())
        .await
        .expect("readable");
    assert!(!stored.is_empty());
    assert!(stored.iter().all(|id| id == correlation), "{stored:?}");
}

#[tokio::test]
async fn given_requests_when_metrics_are_scraped_then_routes_statuses_and_events_are_counted() {
    let app = TestApp::start().await;
    let response = app
        .put("/inventory", &operator(TENANT_A))
        .json(&json!({"sku": "MET-1", "quantity": 3}))
        .send()
        .await
        .expect("answered");
    assert_eq!(response.status(), 204);
    let text = app
        .get("/metrics")
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .expect("answered")
        .text()
        .await
        .expect("text");
    assert!(
        text.contains("http_requests_total{route=\"/inventory\",method=\"PUT\",status=\"204\"}"),
        "{text}"
    );
    assert!(
        text.contains("http_request_duration_seconds_bucket"),
        "{text}"
    );
    assert!(
        text.contains("events_appended_total{aggregate=\"inventory\"}"),
        "{text}"
    );
}

#[tokio::test]
async fn given_text_with_a_nul_character_when_commanding_then_422_and_nothing_is_stored() {
    let app = TestApp::start().await;
    let token = operator(TENANT_A);
    let before = app.event_count().await;

    // PostgreSQL stores no NUL in jsonb or text: refused as input, not failed as storage
    let response = app
        .post("/products", &token)
        .header("content-type", "application/json")
        .body(r#"{"sku":"NUL-1","name":"Red\u0000shirt","price":{"amount_minor":1999,"currency":"EUR"}}"#)
        .send()
        .await
        .expect("answered");
    let body = problem(response, 422).await;
    assert!(body.to_string().contains("NUL"), "says why: {body}");

    // An escaped backslash followed by "u0000" is ordinary text
    let response = app
        .post("/products", &token)
        .header("content-type", "application/json")
        .body(
            r#"{"sku":"NUL-2","name":"C:\\u0000","price":{"amount_minor":1999,"currency":"EUR"}}"#,
        )
        .send()
        .await
        .expect("answered");
    assert_eq!(response.status(), 201);
    assert_eq!(app.event_count().await, before + 1);
}
