//! Black-box: `POST /products`: creation, idempotent replay (B12), SKU uniqueness per tenant
//! and tenant separation, refusals (B3, B5, B8, roles) without events.

mod common;

use common::{TENANT_A, TENANT_B, TestApp, customer, operator, problem};
use serde_json::{Value, json};

fn product(sku: &str) -> Value {
    json!({"sku": sku, "name": "Red T-shirt", "price": {"amount_minor": 1999, "currency": "EUR"}})
}

#[tokio::test]
async fn given_a_new_sku_when_an_operator_creates_it_then_201_and_a_replay_is_identical() {
    let app = TestApp::start().await;
    let before = app.event_count().await;
    let send = || {
        app.post("/products", &operator(TENANT_A))
            .header("idempotency-key", "p-1")
            .json(&product("TSHIRT-RED"))
            .send()
    };
    let first = send().await.expect("answered");
    assert_eq!(first.status(), 201);
    let token: i64 = first.headers()["consistency-token"]
        .to_str()
        .expect("ascii")
        .parse()
        .expect("a position");
    assert!(token > 0);
    let first_body = first.bytes().await.expect("body");
    let created: Value = serde_json::from_slice(&first_body).expect("JSON");
    assert_eq!(created["sku"], "TSHIRT-RED");
    assert_eq!(
        created["price"],
        json!({"amount_minor": 1999, "currency": "EUR"})
    );
    assert!(
        created["id"]
            .as_str()
            .is_some_and(|id| uuid::Uuid::parse_str(id).is_ok())
    );
    assert_eq!(app.event_count().await, before + 1);

    let replay = send().await.expect("answered");
    assert_eq!(replay.status(), 201);
    assert_eq!(replay.bytes().await.expect("body"), first_body);
    assert_eq!(
        app.event_count().await,
        before + 1,
        "a replay appends nothing"
    );

    let reused = app
        .post("/products", &operator(TENANT_A))
        .header("idempotency-key", "p-1")
        .json(&product("TSHIRT-BLUE"))
        .send()
        .await
        .expect("answered");
    problem(reused, 409).await;
    assert_eq!(app.event_count().await, before + 1);
}

#[tokio::test]
async fn given_an_existing_sku_when_created_again_then_409_but_another_tenant_has_its_own() {
    let app = TestApp::start().await;
    let response = app
        .post("/products", &operator(TENANT_A))
        .json(&product("MUG"))
        .send()
        .await
        .expect("answered");
    assert_eq!(response.status(), 201);
    let a: Value = response.json().await.expect("JSON");
    let before = app.event_count().await;
    let response = app
        .post("/products", &operator(TENANT_A))
        .json(&product("MUG"))
        .send()
        .await
        .expect("answered");
    problem(response, 409).await;
    assert_eq!(app.event_count().await, before);

    let mut other = product("MUG");
    other["price"]["amount_minor"] = json!(500);
    let response = app
        .post("/products", &operator(TENANT_B))
        .json(&other)
        .send()
        .await
        .expect("answered");
    assert_eq!(
        response.status(),
        201,
        "the same SKU in another tenant is separate"
    );
    let b: Value = response.json().await.expect("JSON");
    assert_ne!(a["id"], b["id"]);
    assert_eq!(b["price"]["amount_minor"], 500);
    let streams: Vec<String> = sqlx::query_scalar(
        "SELECT DISTINCT aggregate_id FROM events WHERE aggregate_type = 'product' ORDER BY 1",
    )
    .fetch_all(app.db.pool())
    .await
    .expect("readable");
    assert_eq!(streams, ["acme/MUG", "globex/MUG"]);
}

#[tokio::test]
async fn given_invalid_products_when_created_then_refused_without_events() {
    let app = TestApp::start().await;
    let before = app.event_count().await;
    let token = operator(TENANT_A);
    let mut bodies = vec![
        json!({"sku": "A", "name": "n"}),
        json!({"sku": "A", "name": "", "price": {"amount_minor": 1, "currency": "EUR"}}),
        json!({"sku": "A/B", "name": "n", "price": {"amount_minor": 1, "currency": "EUR"}}),
        json!({"sku": "A", "name": "n", "price": {"amount_minor": 0, "currency": "EUR"}}),
        json!({"sku": "A", "name": "n", "price": {"amount_minor": -1, "currency": "EUR"}}),
        json!({"sku": "A", "name": "n", "price": {"amount_minor": 19.99, "currency": "EUR"}}),
        json!({"sku": "A", "name": "n", "price": {"amount_minor": "NaN", "currency": "EUR"}}),
        json!({"sku": "A", "name": "n", "price": {"amount_minor": 1, "currency": "eur"}}),
        json!({"sku": "A", "name": "n", "price": {"amount_minor": 1, "currency": "EUR", "extra": 1}}),
    ];
    for mass in ["tenant_id", "id", "status", "customer_id"] {
        let mut body = product("A");
        body[mass] = json!("injected");
        bodies.push(body);
    }
    for body in bodies {
        let response = app
            .post("/products", &token)
            .json(&body)
            .send()
            .await
            .expect("answered");
        problem(response, 422).await;
    }
    let response = app
        .post("/products", &customer(TENANT_A, "alice"))
        .json(&product("A"))
        .send()
        .await
        .expect("answered");
    problem(response, 403).await;
    assert_eq!(app.event_count().await, before);
}
