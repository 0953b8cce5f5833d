//! Black-box: bad input on the query endpoints (B6, B7, B9–B11, B14 of the bad-input matrix),
//! over HTTP against the real router and a real PostgreSQL.
//!
//! The read models are filled without a broker: commands go over HTTP into the event store, and
//! the read models are then rebuilt from it (the same fold the projection workers apply). Every
//! refusal is a problem+json with no SQL or internal text, and nothing of another tenant (or of
//! another customer) is told apart from an id that does not exist.

mod common;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use commerce_api::auth::Role;
use commerce_api::limits::Limits;
use commerce_eventstore::PgEventStore;
use commerce_projections::Rebuild;
use jsonwebtoken::{EncodingKey, Header};
use reqwest::{RequestBuilder, Response};
use serde_json::{Value, json};

use common::{SECRET, TENANT_A, TENANT_B, TestApp, customer, operator, problem};

/// Words that would betray internal error text in a response body.
const LEAKS: [&str; 7] = [
    "sqlx",
    "syntax error",
    "SELECT",
    "relation ",
    "panicked",
    "postgres",
    "invalid input syntax",
];

/// The API over a database of its own, with the engine's schemas but no running components.
struct QueryApp {
    app: TestApp,
}

/// What tenant A holds once seeded.
struct Seeded {
    product_id: String,
    order_id: String,
    campaign_id: String,
}

impl QueryApp {
    async fn start() -> Self {
        let limits = Limits {
            consistency_wait: Duration::from_millis(300),
            ..Limits::default()
        };
        let app = TestApp::start_with(limits).await;
        commerce_api::engine::migrate(app.db.pool())
            .await
            .expect("engine migrations");
        Self { app }
    }

    fn get(&self, path: &str, token: &str) -> RequestBuilder {
        self.app.client.get(self.app.url(path)).bearer_auth(token)
    }

    async fn command(&self, path: &str, token: &str, body: Value, put: bool) -> Response {
        let request = if put {
            self.app.client.put(self.app.url(path))
        } else {
            self.app.client.post(self.app.url(path))
        };
        let response = request
            .bearer_auth(token)
            .json(&body)
            .send()
            .await
            .expect("answered");
        assert!(
            response.status().is_success(),
            "{path}: {}",
            response.status()
        );
        response
    }

    /// Tenant A: a product with stock, a campaign, and alice's order; then the read models are
    /// rebuilt from the store.
    async fn seed(&self) -> Seeded {
        let op = operator(TENANT_A);
        let product: Value = self
            .command(
                "/products",
                &op,
                json!({"sku": "TEE", "name": "Tee", "price": {"amount_minor": 1999, "currency": "EUR"}}),
                false,
            )
            .await
            .json()
            .await
            .expect("JSON");
        self.command(
            "/inventory",
            &op,
            json!({"sku": "TEE", "quantity": 10}),
            true,
        )
        .await;
        let start = chrono::Utc::now() - chrono::Duration::minutes(1);
        let campaign: Value = self
            .command(
                "/campaigns",
                &op,
                json!({"sku": "TEE", "min_participants": 2, "max_participants": 5,
                    "group_price": {"amount_minor": 999, "currency": "EUR"},
                    "original_price": {"amount_minor": 1999, "currency": "EUR"},
                    "start_time": start, "end_time": start + chrono::Duration::days(1)}),
                false,
            )
            .await
            .json()
            .await
            .expect("JSON");
        let order: Value = self
            .command(
                "/orders",
                &customer(TENANT_A, "alice"),
                json!({"lines": [{"sku": "TEE", "quantity": 1}], "currency": "EUR"}),
                false,
            )
            .await
            .json()
            .await
            .expect("JSON");
        let store = PgEventStore::new(self.app.db.pool().clone())
            .with_upcasters(commerce_aggregates::product::upcasters());
        commerce_replay::rebuild_read_models(&store, Rebuild::All, |_| {})
            .await
            .expect("read models rebuilt from the store");
        let id = |value: &Value| value["id"].as_str().expect("an id").to_owned();
        Seeded {
            product_id: id(&product),
            order_id: id(&order),
            campaign_id: id(&campaign),
        }
    }
}

fn now() -> i64 {
    let seconds = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_secs();
    i64::try_from(seconds).expect("in range")
}

fn signed(claims: &Value, secret: &[u8]) -> String {
    jsonwebtoken::encode(
        &Header::default(),
        claims,
        &EncodingKey::from_secret(secret),
    )
    .expect("signable")
}

/// A refusal: problem+json with `status`, and no internal text in it.
async fn refused(response: Response, status: u16, what: &str) -> Value {
    let body = problem(response, status).await;
    let text = body.to_string();
    for leak in LEAKS {
        assert!(!text.contains(leak), "{what}: `{leak}` leaked in {text}");
    }
    body
}

async fn ok_json(response: Response, what: &str) -> Value {
    assert_eq!(response.status().as_u16(), 200, "{what}");
    response.json().await.expect("a JSON body")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_out_of_bounds_or_malformed_list_parameters_when_listing_orders_then_400() {
    // Given alice's order, projected
    let app = QueryApp::start().await;
    let seeded = app.seed().await;
    let op = operator(TENANT_A);
    let long_cursor = "A".repeat(10_000);
    // A well-formed cursor of an instant about 7,500 years before the common era, which
    // chrono accepts and PostgreSQL does not
    let ancient_cursor: String = format!("-300000000000000000:{}", uuid::Uuid::nil().simple())
        .bytes()
        .map(|byte| format!("{byte:02x}"))
        .collect();

    // When list parameters are out of bounds, malformed, repeated or absurdly long
    for query in [
        "limit=",
        "limit=1.5",
        "limit=%00",
        "limit=99999999999999999999",
        "limit=1&limit=2",
        "from=2026-13-45T00:00:00Z",
        "to=%27%20OR%201%3D1%20--",
        "status=CONFIRMED",
        "status=",
        "cursor=eyJ0IjoiMjAyNi0wMS0wMSIsImlkIjoiMSJ9",
        &format!("cursor={long_cursor}"),
        &format!("cursor={ancient_cursor}"),
        "customer_id=a%00b",
    ] {
        // Then each is a 400 problem that names no internals
        let response = app
            .get(&format!("/orders?{query}"), &op)
            .send()
            .await
            .expect("answered");
        refused(response, 400, query).await;
    }

    // And an unknown filter is ignored: the page equals the unfiltered one
    let plain = ok_json(
        app.get("/orders", &op).send().await.expect("answered"),
        "plain",
    )
    .await;
    for query in [
        "colour=red",
        "tenant_id=globex",
        "sort=id;DROP TABLE orders",
    ] {
        let page = ok_json(
            app.get(&format!("/orders?{query}"), &op)
                .send()
                .await
                .expect("answered"),
            query,
        )
        .await;
        assert_eq!(page, plain, "{query}");
    }
    assert_eq!(plain["items"][0]["id"], seeded.order_id.as_str());
    // And an empty window (to before from) is an empty page, not an error
    let empty = ok_json(
        app.get(
            "/orders?from=2030-01-01T00:00:00Z&to=2020-01-01T00:00:00Z",
            &op,
        )
        .send()
        .await
        .expect("answered"),
        "inverted window",
    )
    .await;
    assert_eq!(empty["items"], json!([]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_malformed_ids_when_queried_then_404_without_internal_text() {
    // Given tenant A's objects, projected
    let app = QueryApp::start().await;
    app.seed().await;
    let op = operator(TENANT_A);
    let auditor = common::token(TENANT_A, "aud-1", &[Role::Auditor]);
    let long = "f".repeat(4_096);

    // When ids are not UUIDs, look like injections or traversals, or are over-long
    for id in [
        "not-a-uuid",
        "%27%20OR%201%3D1%20--",
        "..%2F..%2Fetc%2Fpasswd",
        "00000000-0000-0000-0000-000000000000",
        "0b7e8f6c-6c7e-4f6e-9a43-3a7a9b1f5a2d0000",
        "%E2%98%83",
        long.as_str(),
    ] {
        for (path, token) in [
            (format!("/products/{id}"), &op),
            (format!("/orders/{id}"), &op),
            (format!("/campaigns/{id}"), &op),
            (format!("/payments/{id}"), &op),
            (format!("/shipments/{id}"), &op),
            (format!("/orders/{id}/payments"), &op),
            (format!("/orders/{id}/shipments"), &op),
            (format!("/inventory/{id}"), &op),
            (format!("/audit/orders/{id}/events"), &auditor),
            (format!("/audit/orders/{id}/history"), &auditor),
        ] {
            // Then each is a 404 problem like an id that does not exist
            let response = app.get(&path, token).send().await.expect("answered");
            refused(response, 404, &path).await;
        }
    }
    // And a SKU lookup without a SKU is a 400, an absurd one is not found
    refused(
        app.get("/products?sku=", &op)
            .send()
            .await
            .expect("answered"),
        400,
        "empty sku",
    )
    .await;
    refused(
        app.get(&format!("/products?sku={long}"), &op)
            .send()
            .await
            .expect("answered"),
        404,
        "long sku",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_another_tenants_or_customers_ids_when_queried_then_the_same_404_as_a_missing_id() {
    // Given tenant A's product, campaign and alice's order, projected
    let app = QueryApp::start().await;
    let seeded = app.seed().await;
    let missing = uuid::Uuid::new_v4().to_string();
    let own = [
        format!("/products/{}", seeded.product_id),
        format!("/campaigns/{}", seeded.campaign_id),
        format!("/orders/{}", seeded.order_id),
        format!("/orders/{}/payments", seeded.order_id),
        format!("/orders/{}/shipments", seeded.order_id),
        "/inventory/TEE".to_owned(),
    ];
    for path in &own {
        ok_json(
            app.get(path, &operator(TENANT_A))
                .send()
                .await
                .expect("answered"),
            path,
        )
        .await;
    }

    // When tenant B (operator or customer) and A's other customer ask for them
    let strangers = [
        ("B's operator", operator(TENANT_B)),
        ("B's alice", customer(TENANT_B, "alice")),
    ];
    for (who, token) in &strangers {
        for path in &own {
            // Then each is a 404, never a 403 that would confirm the id exists
            let body = refused(
                app.get(path, token).send().await.expect("answered"),
                404,
                path,
            )
            .await;
            // And its body is the one a missing id gets, but for the id itself
            let twin = path
                .replace(&seeded.product_id, &missing)
                .replace(&seeded.campaign_id, &missing)
                .replace(&seeded.order_id, &missing)
                .replace("TEE", "NOPE");
            let expected = refused(
                app.get(&twin, token).send().await.expect("answered"),
                404,
                &twin,
            )
            .await;
            assert_eq!(body["title"], expected["title"], "{who} {path}");
            assert_eq!(body["type"], expected["type"], "{who} {path}");
        }
    }
    let bob = customer(TENANT_A, "bob");
    for path in [
        format!("/orders/{}", seeded.order_id),
        format!("/orders/{}/payments", seeded.order_id),
        format!("/orders/{}/shipments", seeded.order_id),
    ] {
        refused(
            app.get(&path, &bob).send().await.expect("answered"),
            404,
            &path,
        )
        .await;
    }
    // And B's listings show nothing of A's, whatever the filter names
    for query in [
        "",
        "?customer_id=alice",
        "?tenant_id=acme",
        "?status=placed",
    ] {
        let page = ok_json(
            app.get(&format!("/orders{query}"), &operator(TENANT_B))
                .send()
                .await
                .expect("answered"),
            query,
        )
        .await;
        assert_eq!(page["items"], json!([]), "{query}");
    }
    // And bob, filtering on alice, gets an empty page
    let snooping = ok_json(
        app.get("/orders?customer_id=alice", &bob)
            .send()
            .await
            .expect("answered"),
        "snooping",
    )
    .await;
    assert_eq!(snooping["items"], json!([]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_bad_or_expired_tokens_when_querying_then_401_with_one_body() {
    // Given alice's order, projected
    let app = QueryApp::start().await;
    let seeded = app.seed().await;
    let claims =
        |exp: i64| json!({"sub": "op-1", "tenant": TENANT_A, "roles": ["operator"], "exp": exp});
    let valid = signed(&claims(now() + 300), SECRET);
    let (head, rest) = valid.split_once('.').expect("a JWT");
    let tampered = format!("{head}.{}", rest.replacen('e', "f", 1));
    let tokens = [
        ("expired", signed(&claims(now() - 120), SECRET)),
        (
            "another key",
            signed(&claims(now() + 300), b"another-secret-another-secret!!!"),
        ),
        ("tampered", tampered),
        ("not a JWT", "not.a.jwt".to_owned()),
        ("garbage", "%%%".to_owned()),
        ("empty", String::new()),
        ("huge", "a".repeat(16_000)),
    ];
    let paths = [
        format!("/orders/{}", seeded.order_id),
        "/orders".to_owned(),
        format!("/products/{}", seeded.product_id),
        "/inventory/TEE".to_owned(),
    ];
    let mut bodies = Vec::new();
    for path in &paths {
        // When a query carries a bad token, or none, or another scheme
        for (what, token) in &tokens {
            let response = app.get(path, token).send().await.expect("answered");
            bodies.push(refused(response, 401, &format!("{what} on {path}")).await);
        }
        let none = app
            .app
            .client
            .get(app.app.url(path))
            .send()
            .await
            .expect("answered");
        bodies.push(refused(none, 401, "no header").await);
        let basic = app
            .app
            .client
            .get(app.app.url(path))
            .header("authorization", "Basic b3AtMTpwYXNzd29yZA==")
            .send()
            .await
            .expect("answered");
        bodies.push(refused(basic, 401, "basic").await);
        let in_query = app
            .app
            .client
            .get(app.app.url(&format!("{path}?access_token={valid}")))
            .send()
            .await
            .expect("answered");
        bodies.push(refused(in_query, 401, "token in the query").await);
    }
    // Then every refusal is the same body: nothing tells which check failed
    let first = &bodies[0];
    for body in &bodies {
        assert_eq!(body["title"], first["title"]);
        assert_eq!(body["detail"], first["detail"]);
    }
    // And a valid token of an unknown tenant is refused before anything is read
    let stranger = signed(
        &json!({"sub": "op-1", "tenant": "initech", "roles": ["operator"], "exp": now() + 300}),
        SECRET,
    );
    let response = app
        .get(&format!("/orders/{}", seeded.order_id), &stranger)
        .send()
        .await
        .expect("answered");
    let status = response.status().as_u16();
    assert!(status == 401 || status == 403, "unknown tenant: {status}");
    refused(response, status, "unknown tenant").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_malformed_consistency_tokens_when_querying_then_400() {
    // Given alice's order, projected
    let app = QueryApp::start().await;
    let seeded = app.seed().await;
    let op = operator(TENANT_A);
    let path = format!("/orders/{}", seeded.order_id);
    // When the Consistency-Token header is not one positive integer
    for value in [
        "abc",
        "-1",
        "0",
        "1.5",
        "99999999999999999999999",
        "1, 2",
        "",
    ] {
        let response = app
            .get(&path, &op)
            .header("consistency-token", value)
            .send()
            .await
            .expect("answered");
        // Then the query is a 400 problem
        refused(response, 400, value).await;
    }
    // And two of them are a 400 too
    let response = app
        .get(&path, &op)
        .header("consistency-token", "1")
        .header("consistency-token", "2")
        .send()
        .await
        .expect("answered");
    refused(response, 400, "two headers").await;
}
