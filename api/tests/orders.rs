//! Black-box: `POST /orders` and `POST /orders/{id}/cancel`: checkout priced from the tenant's
//! catalog, idempotent replay (B12), line limits (B4), bad quantities and currencies (B5), mass
//! assignment (B8), ownership and tenant isolation (B7). Refusals append no event.

mod common;

use commerce_api::auth::Role;
use commerce_api::limits::Limits;
use common::{TENANT_A, TENANT_B, TestApp, customer, operator, problem, token};
use serde_json::{Value, json};

async fn product(app: &TestApp, tenant: &str, sku: &str, price: i64) {
    let response = app
        .post("/products", &operator(tenant))
        .json(
            &json!({"sku": sku, "name": sku, "price": {"amount_minor": price, "currency": "EUR"}}),
        )
        .send()
        .await
        .expect("answered");
    assert_eq!(response.status(), 201, "product {sku} created");
}

fn order(lines: &[(&str, u64)]) -> Value {
    let lines: Vec<Value> = lines
        .iter()
        .map(|(sku, quantity)| json!({"sku": sku, "quantity": quantity}))
        .collect();
    json!({"lines": lines, "currency": "EUR", "payment_method": "pm_card_ok"})
}

async fn place(app: &TestApp, token: &str, body: &Value) -> reqwest::Response {
    app.post("/orders", token)
        .json(body)
        .send()
        .await
        .expect("answered")
}

#[tokio::test]
async fn given_catalog_products_when_a_customer_orders_then_201_priced_by_the_catalog_and_replays_are_identical()
 {
    let app = TestApp::start().await;
    product(&app, TENANT_A, "TEE", 1999).await;
    product(&app, TENANT_A, "MUG", 500).await;
    let before = app.event_count().await;
    let body = order(&[("TEE", 2), ("MUG", 1)]);
    let send = || {
        app.post("/orders", &customer(TENANT_A, "alice"))
            .header("idempotency-key", "checkout-1")
            .json(&body)
            .send()
    };
    let first = send().await.expect("answered");
    assert_eq!(first.status(), 201);
    assert!(first.headers().contains_key("consistency-token"));
    let first_body = first.bytes().await.expect("body");
    let placed: Value = serde_json::from_slice(&first_body).expect("JSON");
    assert_eq!(placed["status"], "placed");
    assert_eq!(
        placed["total"],
        json!({"amount_minor": 4498, "currency": "EUR"})
    );
    let after = app.event_count().await;
    assert!(after > before);

    let replay = send().await.expect("answered");
    assert_eq!(replay.status(), 201);
    assert_eq!(replay.bytes().await.expect("body"), first_body);
    assert_eq!(app.event_count().await, after, "a replay appends nothing");

    let reused = app
        .post("/orders", &customer(TENANT_A, "alice"))
        .header("idempotency-key", "checkout-1")
        .json(&order(&[("TEE", 3)]))
        .send()
        .await
        .expect("answered");
    problem(reused, 409).await;
    assert_eq!(app.event_count().await, after);

    // Another customer with the same key and body is told the key is taken, not given
    // alice's order
    let other = app
        .post("/orders", &customer(TENANT_A, "bob"))
        .header("idempotency-key", "checkout-1")
        .json(&body)
        .send()
        .await
        .expect("answered");
    let refused = problem(other, 409).await;
    assert!(
        !refused
            .to_string()
            .contains(placed["id"].as_str().unwrap_or("no id")),
        "{refused}"
    );
    assert_eq!(app.event_count().await, after);

    // The customer is the token's subject, stored in the event
    let customer: String = sqlx::query_scalar(
        "SELECT payload->>'customer_id' FROM events WHERE event_type = 'order.created'",
    )
    .fetch_one(app.db.pool())
    .await
    .expect("one order");
    assert_eq!(customer, "alice");
}

#[tokio::test]
async fn given_bad_checkouts_when_placed_then_refused_without_events() {
    let limits = Limits {
        order_lines: 100,
        ..Limits::default()
    };
    let app = TestApp::start_with(limits).await;
    product(&app, TENANT_A, "TEE", 1999).await;
    let alice = customer(TENANT_A, "alice");
    let before = app.event_count().await;

    let too_many: Vec<(&str, u64)> = (0..101).map(|_| ("TEE", 1)).collect();
    let mut with_campaign = order(&[("TEE", 1)]);
    with_campaign["campaign_id"] = json!("00000000-0000-4000-8000-000000000000");
    let mut refusals = vec![
        order(&[]),
        order(&too_many),
        order(&[("TEE", 0)]),
        order(&[("TEE", 1_000_001)]),
        order(&[("TEE", u64::from(u32::MAX) + 1)]),
        order(&[("bad/sku", 1)]),
        json!({"lines": [{"sku": "TEE", "quantity": -1}], "currency": "EUR"}),
        json!({"lines": [{"sku": "TEE", "quantity": 1.5}], "currency": "EUR"}),
        json!({"lines": [{"sku": "TEE", "quantity": 1}], "currency": "ZZZ"}),
        json!({"lines": [{"sku": "TEE", "quantity": 1}]}),
        with_campaign,
    ];
    for (field, value) in [
        ("customer_id", json!("mallory")),
        ("tenant_id", json!(TENANT_B)),
        ("status", json!("confirmed")),
        ("total", json!({"amount_minor": 1, "currency": "EUR"})),
    ] {
        let mut body = order(&[("TEE", 1)]);
        body[field] = value;
        refusals.push(body);
    }
    let mut priced_line = order(&[("TEE", 1)]);
    priced_line["lines"][0]["unit_price"] = json!({"amount_minor": 1, "currency": "EUR"});
    refusals.push(priced_line);
    for body in &refusals {
        problem(place(&app, &alice, body).await, 422).await;
    }
    // A currency other than the catalog's, and an unknown SKU: the aggregate refuses them
    for body in [
        json!({"lines": [{"sku": "TEE", "quantity": 1}], "currency": "USD"}),
        order(&[("NOPE", 1)]),
    ] {
        let response = place(&app, &alice, &body).await;
        let status = response.status().as_u16();
        assert!(
            status == 422 || status == 404 || status == 409,
            "refused: {status}"
        );
        problem(response, status).await;
    }
    // B4: a 10,000-line order is over the body limit before it is parsed
    let huge: Vec<(&str, u64)> = (0..10_000).map(|_| ("TEE", 1)).collect();
    problem(place(&app, &alice, &order(&huge)).await, 413).await;
    // Roles that may not order
    for roles in [&[Role::Auditor][..], &[Role::Analyst]] {
        let response = place(&app, &token(TENANT_A, "eve", roles), &order(&[("TEE", 1)])).await;
        problem(response, 403).await;
    }
    assert_eq!(
        app.event_count().await,
        before,
        "no refusal appended an event"
    );
}

#[tokio::test]
async fn given_the_same_sku_in_two_tenants_when_ordered_then_each_uses_its_own_catalog() {
    let app = TestApp::start().await;
    product(&app, TENANT_A, "TEE", 1999).await;
    product(&app, TENANT_B, "TEE", 700).await;
    product(&app, TENANT_B, "ONLY-B", 100).await;
    let a: Value = place(&app, &customer(TENANT_A, "alice"), &order(&[("TEE", 1)]))
        .await
        .json()
        .await
        .expect("JSON");
    let b: Value = place(&app, &customer(TENANT_B, "bob"), &order(&[("TEE", 1)]))
        .await
        .json()
        .await
        .expect("JSON");
    assert_eq!(a["total"]["amount_minor"], 1999);
    assert_eq!(b["total"]["amount_minor"], 700);
    // Tenant A cannot order tenant B's product
    let before = app.event_count().await;
    let response = place(&app, &customer(TENANT_A, "alice"), &order(&[("ONLY-B", 1)])).await;
    assert!(response.status().is_client_error());
    assert_eq!(app.event_count().await, before);
}

#[tokio::test]
async fn given_an_order_when_canceled_then_only_its_owner_or_an_operator_of_its_tenant_can() {
    let app = TestApp::start().await;
    product(&app, TENANT_A, "TEE", 1999).await;
    let alice = customer(TENANT_A, "alice");
    let placed: Value = place(&app, &alice, &order(&[("TEE", 1)]))
        .await
        .json()
        .await
        .expect("JSON");
    let id = placed["id"].as_str().expect("an id").to_owned();
    let path = format!("/orders/{id}/cancel");
    let reason = json!({"reason": "changed my mind"});
    let before = app.event_count().await;

    // Someone else's order is not found: another customer, another tenant's operator or customer
    for stranger in [
        customer(TENANT_A, "mallory"),
        operator(TENANT_B),
        customer(TENANT_B, "alice"),
    ] {
        let response = app
            .post(&path, &stranger)
            .json(&reason)
            .send()
            .await
            .expect("answered");
        problem(response, 404).await;
    }
    // Ids that are no order
    for bad in [
        "not-a-uuid",
        "00000000-0000-4000-8000-000000000000",
        "%27%20OR%201%3D1",
    ] {
        let response = app
            .post(&format!("/orders/{bad}/cancel"), &operator(TENANT_A))
            .json(&reason)
            .send()
            .await
            .expect("answered");
        problem(response, 404).await;
    }
    let response = app
        .post(&path, &alice)
        .json(&json!({"reason": ""}))
        .send()
        .await
        .expect("answered");
    problem(response, 422).await;
    assert_eq!(app.event_count().await, before, "refusals changed nothing");

    let response = app
        .post(&path, &alice)
        .json(&reason)
        .send()
        .await
        .expect("answered");
    assert_eq!(response.status(), 200);
    assert!(response.headers().contains_key("consistency-token"));
    let canceled: Value = response.json().await.expect("JSON");
    assert_eq!(
        canceled,
        json!({"id": id, "status": "canceled", "cancel_reason": "customer_request"})
    );
    let after = app.event_count().await;
    assert_eq!(after, before + 1);

    // Canceling again is a conflict
    let response = app
        .post(&path, &operator(TENANT_A))
        .json(&reason)
        .send()
        .await
        .expect("answered");
    problem(response, 409).await;
    assert_eq!(app.event_count().await, after);

    // An operator cancels another customer's order with reason `operator`
    let placed: Value = place(&app, &customer(TENANT_A, "bob"), &order(&[("TEE", 1)]))
        .await
        .json()
        .await
        .expect("JSON");
    let response = app
        .post(
            &format!("/orders/{}/cancel", placed["id"].as_str().expect("id")),
            &operator(TENANT_A),
        )
        .json(&reason)
        .send()
        .await
        .expect("answered");
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.json::<Value>().await.expect("JSON")["cancel_reason"],
        "operator"
    );
}
