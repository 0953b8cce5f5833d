//! Black-box tests of the query endpoints on the real components: PostgreSQL, Tansu, and the
//! relay, a projection worker and the workflows running in-process (topics behind a unique
//! prefix, a database per test). Commands go over HTTP; queries carrying the command's
//! `Consistency-Token` must see the new state.

mod common;

use std::time::{Duration, Instant};

use chrono::Utc;
use commerce_api::app;
use commerce_api::auth::{AuthConfig, TokenVerifier, VerifyingKey};
use commerce_api::config::KafkaBrokers;
use commerce_api::engine::{Components, Engine, EngineConfig};
use commerce_api::limits::Limits;
use commerce_api::state::{AppState, StateParts};
use commerce_api::tenants;
use commerce_api::webhooks::WebhookSecrets;
use commerce_devstack::testkit::{self, TestDatabase};
use commerce_domain::TenantId;
use reqwest::{Client, RequestBuilder, Response};
use serde_json::{Value, json};

use common::{SECRET, TENANT_A, TENANT_B, customer, operator, problem, retry_after};

/// The API and (some of) the engine's components on a database and topics of their own.
struct EngineApp {
    addr: std::net::SocketAddr,
    client: Client,
    engine: Option<Engine>,
    /// Last, so the database goes after everything that still uses it.
    _db: TestDatabase,
}

impl EngineApp {
    async fn start(components: Components, limits: Limits) -> Self {
        let db = TestDatabase::create()
            .await
            .expect("a test database (source .local/devstack.env)");
        commerce_eventstore::migrate(db.pool())
            .await
            .expect("event store migrations");
        tenants::migrate(db.pool()).await.expect("api migrations");
        commerce_api::engine::migrate(db.pool())
            .await
            .expect("engine migrations");
        for tenant in [TENANT_A, TENANT_B] {
            tenants::add(db.pool(), &TenantId::new(tenant).expect("valid"))
                .await
                .expect("tenant added");
        }
        let brokers = testkit::kafka_brokers().expect("KAFKA_BROKERS is set");
        let config = EngineConfig {
            topic_prefix: format!("{}.", testkit::unique_topic("q")),
            partitions: 2,
            projection_group: testkit::unique_topic("projections"),
            ..EngineConfig::new(brokers.clone())
        };
        let engine = Engine::start(db.pool().clone(), &config, components)
            .await
            .expect("the engine starts");
        let verifier = TokenVerifier::new(&AuthConfig {
            key: VerifyingKey::Hs256(SECRET.to_vec()),
            audience: None,
            issuer: None,
            leeway: Duration::from_secs(5),
        })
        .expect("valid key");
        let state = AppState::new(StateParts {
            verifier,
            limits,
            webhooks: WebhookSecrets::default(),
            pool: db.pool().clone(),
            brokers: Some(KafkaBrokers::parse(&brokers).expect("valid list")),
        });
        if let Some(relay) = engine.relay_status() {
            state.set_relay_status(relay);
        }
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a free port");
        let addr = listener.local_addr().expect("bound");
        let router = app::router(state);
        tokio::spawn(async move { axum::serve(listener, router).await });
        Self {
            addr,
            client: Client::new(),
            engine: Some(engine),
            _db: db,
        }
    }

    async fn all() -> Self {
        // Generous read-your-writes wait: CI runs many engines at once on two cores.
        let limits = Limits {
            consistency_wait: Duration::from_secs(30),
            ..Limits::default()
        };
        Self::start(Components::ALL, limits).await
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn get(&self, path: &str, token: &str) -> RequestBuilder {
        self.client.get(self.url(path)).bearer_auth(token)
    }

    /// GET with the consistency token of an earlier command.
    fn get_after(&self, path: &str, token: &str, consistency: &str) -> RequestBuilder {
        self.get(path, token)
            .header("Consistency-Token", consistency)
    }

    async fn stop(mut self) {
        if let Some(engine) = self.engine.take() {
            engine.stop().await.expect("the components stop cleanly");
        }
    }
}

/// The `Consistency-Token` of a command's response, after checking its status.
fn consistency(response: &Response, status: u16) -> String {
    assert_eq!(response.status().as_u16(), status, "command status");
    response
        .headers()
        .get("consistency-token")
        .expect("a command response carries a Consistency-Token")
        .to_str()
        .expect("ASCII")
        .to_owned()
}

async fn json_of(response: Response) -> Value {
    assert_eq!(response.status().as_u16(), 200, "query status");
    response.json().await.expect("a JSON body")
}

/// Adds a product (price 1999 EUR) and stock; returns the product id and the stock's token.
async fn product_with_stock(app: &EngineApp, tenant: &str, sku: &str) -> (String, String) {
    let op = operator(tenant);
    let created = app
        .client
        .post(app.url("/products"))
        .bearer_auth(&op)
        .json(&json!({"sku": sku, "name": format!("Product {sku}"),
                      "price": {"amount_minor": 1999, "currency": "EUR"}}))
        .send()
        .await
        .expect("answered");
    consistency(&created, 201);
    let id = created.json::<Value>().await.expect("JSON")["id"]
        .as_str()
        .expect("an id")
        .to_owned();
    let stocked = app
        .client
        .put(app.url("/inventory"))
        .bearer_auth(&op)
        .json(&json!({"sku": sku, "quantity": 10}))
        .send()
        .await
        .expect("answered");
    (id, consistency(&stocked, 204))
}

/// Places an order for `token`'s caller; returns its id and token.
async fn place_order(app: &EngineApp, token: &str, sku: &str, quantity: u32) -> (String, String) {
    let placed = app
        .client
        .post(app.url("/orders"))
        .bearer_auth(token)
        .json(
            &json!({"lines": [{"sku": sku, "quantity": quantity}], "currency": "EUR",
                      "payment_method": "pm_card_ok"}),
        )
        .send()
        .await
        .expect("answered");
    let position = consistency(&placed, 201);
    let id = placed.json::<Value>().await.expect("JSON")["id"]
        .as_str()
        .expect("an id")
        .to_owned();
    (id, position)
}

/// Polls `path` until `done` holds for its body (the workflows move on asynchronously).
async fn eventually(
    app: &EngineApp,
    path: &str,
    token: &str,
    done: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let response = app.get(path, token).send().await.expect("answered");
        if response.status().as_u16() == 200 {
            let body: Value = response.json().await.expect("JSON");
            if done(&body) {
                return body;
            }
            assert!(
                Instant::now() < deadline,
                "{path} never reached the state: {body}"
            );
        } else {
            assert!(
                Instant::now() < deadline,
                "{path} stayed {}",
                response.status()
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn given_commands_over_http_when_queried_with_their_token_then_the_new_state_is_read() {
    // Given the API with the relay, a projection worker and the workflows in-process
    let app = EngineApp::all().await;
    let op = operator(TENANT_A);
    let alice = customer(TENANT_A, "alice");

    // When a product is created and stocked, then queried with each command's token
    let (product_id, stock_token) = product_with_stock(&app, TENANT_A, "MUG").await;
    let inventory = json_of(
        app.get_after("/inventory/MUG", &alice, &stock_token)
            .send()
            .await
            .expect("answered"),
    )
    .await;
    // Then the queries see them at once
    assert_eq!(inventory["on_hand"], 10);
    assert_eq!(inventory["available"], 10);
    assert_eq!(inventory["locations"][0]["location"], "default");
    // The stock's token vouches for the inventory stream only; the product is its own stream.
    let product = eventually(&app, &format!("/products/{product_id}"), &alice, |_| true).await;
    assert_eq!(product["sku"], "MUG");
    assert_eq!(
        product["price"],
        json!({"amount_minor": 1999, "currency": "EUR"})
    );
    let by_sku = json_of(
        app.get("/products?sku=MUG", &op)
            .send()
            .await
            .expect("answered"),
    )
    .await;
    assert_eq!(by_sku["id"], product_id.as_str());

    // When a customer places an order and reads it with the order's token
    let (order_id, order_token) = place_order(&app, &alice, "MUG", 2).await;
    let order = json_of(
        app.get_after(&format!("/orders/{order_id}"), &alice, &order_token)
            .send()
            .await
            .expect("answered"),
    )
    .await;
    // Then the order is there, priced from the catalog, owned by the token's subject
    assert_eq!(order["id"], order_id.as_str());
    assert_eq!(order["customer_id"], "alice");
    assert_eq!(
        order["total"],
        json!({"amount_minor": 3998, "currency": "EUR"})
    );
    assert_eq!(order["lines"][0]["sku"], "MUG");

    // And the workflows confirm it: stock reserved, payment captured, label created
    let confirmed = eventually(&app, &format!("/orders/{order_id}"), &alice, |order| {
        (order["status"] == "confirmed" || order["status"] == "shipped")
            && order["payment_status"] == "captured"
    })
    .await;
    assert_eq!(confirmed["payment_status"], "captured", "{confirmed}");
    let payments = eventually(
        &app,
        &format!("/orders/{order_id}/payments"),
        &alice,
        |list| list["items"][0]["captured"]["amount_minor"] == 3998,
    )
    .await;
    let payment_id = payments["items"][0]["id"]
        .as_str()
        .expect("an id")
        .to_owned();
    let payment = json_of(
        app.get(&format!("/payments/{payment_id}"), &alice)
            .send()
            .await
            .expect("answered"),
    )
    .await;
    assert_eq!(payment["status"], payments["items"][0]["status"]);
    let shipments = eventually(
        &app,
        &format!("/orders/{order_id}/shipments"),
        &op,
        |list| {
            list["items"]
                .as_array()
                .is_some_and(|items| !items.is_empty())
        },
    )
    .await;
    let shipment_id = shipments["items"][0]["id"]
        .as_str()
        .expect("an id")
        .to_owned();
    let shipment = json_of(
        app.get(&format!("/shipments/{shipment_id}"), &alice)
            .send()
            .await
            .expect("answered"),
    )
    .await;
    assert_eq!(shipment["order_id"], order_id.as_str());
    let stock = eventually(&app, "/inventory/MUG", &op, |stock| stock["on_hand"] == 8).await;
    assert_eq!(stock["available"], 8);

    // And another customer of the tenant sees none of it
    let bob = customer(TENANT_A, "bob");
    for path in [
        format!("/orders/{order_id}"),
        format!("/orders/{order_id}/payments"),
        format!("/orders/{order_id}/shipments"),
        format!("/payments/{payment_id}"),
        format!("/shipments/{shipment_id}"),
    ] {
        problem(app.get(&path, &bob).send().await.expect("answered"), 404).await;
    }

    // And readiness and metrics reflect the in-process components
    let ready = app
        .client
        .get(app.url("/ready"))
        .send()
        .await
        .expect("answered");
    assert_eq!(ready.status().as_u16(), 200);
    let metrics = app
        .client
        .get(app.url("/metrics"))
        .send()
        .await
        .expect("answered")
        .text()
        .await
        .expect("text");
    assert!(
        metrics.contains("relay_events_published_total"),
        "relay metrics"
    );
    assert!(
        metrics.contains("projection_events_applied_total"),
        "projection metrics"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn given_another_tenants_ids_when_queried_then_not_found_and_lists_show_only_own_data() {
    // Given tenant A's product, stock, campaign and order, projected
    let app = EngineApp::all().await;
    let op_a = operator(TENANT_A);
    let (product_id, _) = product_with_stock(&app, TENANT_A, "TEE").await;
    let start = Utc::now() - chrono::Duration::minutes(1);
    let campaign = app
        .client
        .post(app.url("/campaigns"))
        .bearer_auth(&op_a)
        .json(
            &json!({"sku": "TEE", "min_participants": 2, "max_participants": 5,
            "group_price": {"amount_minor": 999, "currency": "EUR"},
            "original_price": {"amount_minor": 1999, "currency": "EUR"},
            "start_time": start, "end_time": start + chrono::Duration::days(1)}),
        )
        .send()
        .await
        .expect("answered");
    let campaign_token = consistency(&campaign, 201);
    let campaign_id = campaign.json::<Value>().await.expect("JSON")["id"]
        .as_str()
        .expect("an id")
        .to_owned();
    let found = json_of(
        app.get_after(&format!("/campaigns/{campaign_id}"), &op_a, &campaign_token)
            .send()
            .await
            .expect("answered"),
    )
    .await;
    assert_eq!(found["sku"], "TEE");
    assert_eq!(found["min_participants"], 2);
    let alice = customer(TENANT_A, "alice");
    let (order_id, order_token) = place_order(&app, &alice, "TEE", 1).await;
    let order = eventually(
        &app,
        &format!("/orders/{order_id}/payments"),
        &op_a,
        |list| {
            list["items"]
                .as_array()
                .is_some_and(|items| !items.is_empty())
        },
    )
    .await;
    let payment_id = order["items"][0]["id"].as_str().expect("an id").to_owned();
    let shipments = eventually(
        &app,
        &format!("/orders/{order_id}/shipments"),
        &op_a,
        |list| {
            list["items"]
                .as_array()
                .is_some_and(|items| !items.is_empty())
        },
    )
    .await;
    let shipment_id = shipments["items"][0]["id"]
        .as_str()
        .expect("an id")
        .to_owned();

    // When tenant B's operator and customer ask for A's objects, even with A's token
    let op_b = operator(TENANT_B);
    let alice_b = customer(TENANT_B, "alice");
    for token in [&op_b, &alice_b] {
        for path in [
            format!("/products/{product_id}"),
            "/products?sku=TEE".to_owned(),
            "/inventory/TEE".to_owned(),
            format!("/campaigns/{campaign_id}"),
            format!("/orders/{order_id}"),
            format!("/orders/{order_id}/payments"),
            format!("/orders/{order_id}/shipments"),
            format!("/payments/{payment_id}"),
            format!("/shipments/{shipment_id}"),
        ] {
            // Then every one is 404, like an id that does not exist
            let response = app
                .get_after(&path, token, &order_token)
                .send()
                .await
                .expect("answered");
            problem(response, 404).await;
        }
        // And B's listing is empty, whatever the filters
        for path in [
            "/orders",
            "/orders?customer_id=alice",
            "/orders?status=confirmed",
        ] {
            let page = json_of(app.get(path, token).send().await.expect("answered")).await;
            assert_eq!(page["items"], json!([]), "{path}");
        }
    }

    // And within A, a customer lists only its own orders; an operator lists all
    let (bob_order, _) = place_order(&app, &customer(TENANT_A, "bob"), "TEE", 1).await;
    let mine = json_of(app.get("/orders", &alice).send().await.expect("answered")).await;
    let ids: Vec<&str> = mine["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|order| order["id"].as_str())
        .collect();
    assert_eq!(ids, [order_id.as_str()]);
    let snooping = json_of(
        app.get("/orders?customer_id=bob", &alice)
            .send()
            .await
            .expect("answered"),
    )
    .await;
    assert_eq!(snooping["items"], json!([]));
    let all = eventually(&app, "/orders", &op_a, |page| {
        page["items"]
            .as_array()
            .is_some_and(|items| items.len() == 2)
    })
    .await;
    assert!(
        all["items"]
            .as_array()
            .expect("items")
            .iter()
            .any(|order| order["id"] == bob_order.as_str())
    );
    // And roles that are neither customer nor operator may not read orders
    let auditor = common::token(TENANT_A, "aud", &[commerce_api::auth::Role::Auditor]);
    problem(
        app.get("/orders", &auditor).send().await.expect("answered"),
        403,
    )
    .await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn given_list_parameters_out_of_bounds_when_listing_then_400_and_pages_chain_without_overlap()
{
    // Given three orders of one customer, projected
    let app = EngineApp::all().await;
    let op = operator(TENANT_A);
    let carol = customer(TENANT_A, "carol");
    product_with_stock(&app, TENANT_A, "CAP").await;
    let mut last_token = String::new();
    for _ in 0..3 {
        last_token = place_order(&app, &carol, "CAP", 1).await.1;
    }
    let projected = json_of(
        app.get_after("/orders", &op, &last_token)
            .send()
            .await
            .expect("answered"),
    )
    .await;
    assert!(
        !ids_of(&projected).is_empty(),
        "the last order is projected"
    );
    // (the other orders are other streams: they may still be on their way)
    eventually(&app, "/orders", &op, |page| ids_of(page).len() == 3).await;
    let first = json_of(
        app.get("/orders?limit=2", &op)
            .send()
            .await
            .expect("answered"),
    )
    .await;

    // When limits out of bounds, malformed filters or a forged cursor are sent
    for query in [
        "limit=0",
        "limit=501",
        "limit=1000000",
        "limit=-1",
        "limit=abc",
        "status=lost",
        "from=yesterday",
        "cursor=not-a-cursor",
        "cursor=%27%20OR%201%3D1%20--",
    ] {
        // Then each is a 400 problem
        let response = app
            .get(&format!("/orders?{query}"), &op)
            .send()
            .await
            .expect("answered");
        problem(response, 400).await;
    }

    // And pages of 2 chain through all three orders exactly once
    let first_ids: Vec<String> = ids_of(&first);
    assert_eq!(first_ids.len(), 2);
    let cursor = first["next_cursor"].as_str().expect("a next page");
    let second = json_of(
        app.get(&format!("/orders?limit=2&cursor={cursor}"), &op)
            .send()
            .await
            .expect("answered"),
    )
    .await;
    let second_ids = ids_of(&second);
    assert_eq!(second_ids.len(), 1);
    assert!(!first_ids.contains(&second_ids[0]));
    assert_eq!(second["next_cursor"], Value::Null);
    // And the maximum page size is accepted, the default is 50
    let max = json_of(
        app.get("/orders?limit=500", &op)
            .send()
            .await
            .expect("answered"),
    )
    .await;
    assert_eq!(ids_of(&max).len(), 3);
    app.stop().await;
}

fn ids_of(page: &Value) -> Vec<String> {
    page["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|order| order["id"].as_str().map(str::to_owned))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_no_projection_running_when_queried_with_a_token_then_503_with_retry_after() {
    // Given the API alone (nothing projects), with a short consistency wait
    let limits = Limits {
        consistency_wait: Duration::from_millis(300),
        ..Limits::default()
    };
    let app = EngineApp::start(Components::NONE, limits).await;
    let (product_id, stock_token) = product_with_stock(&app, TENANT_A, "PEN").await;
    let op = operator(TENANT_A);

    // When a query waits for a command's token
    let started = Instant::now();
    let response = app
        .get_after("/inventory/PEN", &op, &stock_token)
        .send()
        .await
        .expect("answered");
    // Then it gives up after the configured wait with 503 and Retry-After
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert_eq!(retry_after(&response).as_deref(), Some("1"));
    let body = problem(response, 503).await;
    assert_eq!(body["type"], "/problems/read-model-lagging");

    // And a malformed token is a 400, another tenant's token is ignored (plain 404 at once)
    for bad in ["abc", "0", "-5"] {
        let response = app
            .get_after(&format!("/products/{product_id}"), &op, bad)
            .send()
            .await
            .expect("answered");
        problem(response, 400).await;
    }
    let response = app
        .get_after(
            &format!("/products/{product_id}"),
            &operator(TENANT_B),
            &stock_token,
        )
        .send()
        .await
        .expect("answered");
    problem(response, 404).await;
    // And without a token the (empty) read model answers at once
    let response = app
        .get("/inventory/PEN", &op)
        .send()
        .await
        .expect("answered");
    problem(response, 404).await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_as_many_requests_in_flight_as_allowed_when_another_comes_then_503_overloaded_and_probes_still_answer()
 {
    // Given an API that serves one request at a time, busy with a query waiting for a read model
    // nothing projects
    let limits = Limits {
        consistency_wait: Duration::from_secs(2),
        max_in_flight: std::num::NonZeroU32::MIN,
        ..Limits::default()
    };
    let app = EngineApp::start(Components::NONE, limits).await;
    let (_, stock_token) = product_with_stock(&app, TENANT_A, "INK").await;
    let op = operator(TENANT_A);
    let waiting = app.get_after("/inventory/INK", &op, &stock_token).send();
    let waiting = tokio::spawn(waiting);
    tokio::time::sleep(Duration::from_millis(500)).await;

    // When another request comes meanwhile
    let response = app
        .get("/inventory/INK", &op)
        .send()
        .await
        .expect("answered");

    // Then it is refused at once with 503, Retry-After and a problem naming the overload
    assert_eq!(retry_after(&response).as_deref(), Some("1"));
    let body = problem(response, 503).await;
    assert_eq!(body["type"], "/problems/overloaded");
    // And the probes still answer
    let health = app
        .client
        .get(app.url("/health"))
        .send()
        .await
        .expect("answered");
    assert_eq!(health.status().as_u16(), 200);

    // And once the waiting query is answered, requests are served again (nothing projected
    // the stock: a plain 404, not a refusal)
    let waited = waiting.await.expect("task").expect("answered");
    assert_eq!(
        problem(waited, 503).await["type"],
        "/problems/read-model-lagging"
    );
    let response = app
        .get("/inventory/INK", &op)
        .send()
        .await
        .expect("answered");
    problem(response, 404).await;
    app.stop().await;
}
