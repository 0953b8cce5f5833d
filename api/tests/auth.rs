//! Black-box: authentication and tenancy of command endpoints (B6, B9, B10 of the bad-input
//! matrix). Every refusal leaves the event store unchanged.

mod common;

use std::time::{SystemTime, UNIX_EPOCH};

use commerce_api::auth::Role;
use common::{SECRET, TENANT_A, TestApp, operator, problem, token};
use hmac::{Hmac, Mac};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use sha2::Sha256;

const PRIVATE_PEM: &[u8] = include_bytes!("fixtures/rs256-private.pem");
const PUBLIC_PEM: &[u8] = include_bytes!("fixtures/rs256-public.pem");

fn now() -> i64 {
    let seconds = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_secs();
    i64::try_from(seconds).expect("in range")
}

fn claims() -> Value {
    json!({"sub": "op-1", "tenant": TENANT_A, "roles": ["operator"], "exp": now() + 300})
}

fn base64url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        let chars = chunk.len() + 1;
        for i in 0..chars {
            out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
        }
    }
    out
}

/// A token with any header, HMAC-SHA256-signed with `key` (or unsigned when `None`).
fn raw_token(header: &Value, claims: &Value, key: Option<&[u8]>) -> String {
    let signing_input = format!(
        "{}.{}",
        base64url(header.to_string().as_bytes()),
        base64url(claims.to_string().as_bytes())
    );
    let signature = key.map_or_else(String::new, |key| {
        let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("any key length");
        mac.update(signing_input.as_bytes());
        base64url(&mac.finalize().into_bytes())
    });
    format!("{signing_input}.{signature}")
}

fn hs256(claims: &Value) -> String {
    raw_token(&json!({"alg": "HS256", "typ": "JWT"}), claims, Some(SECRET))
}

fn stock() -> Value {
    json!({"sku": "SKU-1", "quantity": 5})
}

#[tokio::test]
async fn given_forged_or_invalid_tokens_when_commanding_then_each_is_401_with_one_body() {
    let app = TestApp::start().await;
    let attacker: &[u8] = b"attacker-secret-attacker-secret!";
    let mut expired = claims();
    expired["exp"] = json!(now() - 120);
    let mut not_yet = claims();
    not_yet["nbf"] = json!(now() + 120);
    let mut no_exp = claims();
    no_exp.as_object_mut().expect("object").remove("exp");
    let forgeries = [
        (
            "alg none",
            raw_token(&json!({"alg": "none", "typ": "JWT"}), &claims(), None),
        ),
        (
            "HS256 with the RSA public key",
            raw_token(&json!({"alg": "HS256"}), &claims(), Some(PUBLIC_PEM)),
        ),
        (
            "bad signature",
            raw_token(&json!({"alg": "HS256"}), &claims(), Some(attacker)),
        ),
        ("expired beyond the leeway", hs256(&expired)),
        ("nbf in the future", hs256(&not_yet)),
        ("missing exp", hs256(&no_exp)),
        (
            "unknown kid",
            raw_token(
                &json!({"alg": "HS256", "kid": "k-evil"}),
                &claims(),
                Some(attacker),
            ),
        ),
        (
            "jku pointing elsewhere",
            raw_token(
                &json!({"alg": "HS256", "jku": "http://127.0.0.1:9/keys"}),
                &claims(),
                Some(SECRET),
            ),
        ),
        (
            "x5u pointing elsewhere",
            raw_token(
                &json!({"alg": "HS256", "x5u": "http://127.0.0.1:9/cert"}),
                &claims(),
                Some(SECRET),
            ),
        ),
        (
            "typ not JWT",
            raw_token(
                &json!({"alg": "HS256", "typ": "at+jwt+evil"}),
                &claims(),
                Some(SECRET),
            ),
        ),
        ("RS256 when HS256 is configured", {
            let key = EncodingKey::from_rsa_pem(PRIVATE_PEM).expect("fixture key");
            jsonwebtoken::encode(&Header::new(Algorithm::RS256), &claims(), &key).expect("signable")
        }),
        ("garbage", "not.a.token".to_owned()),
    ];
    let before = app.event_count().await;
    let mut bodies = Vec::new();
    for (name, forged) in &forgeries {
        let response = app
            .put("/inventory", forged)
            .json(&stock())
            .send()
            .await
            .expect("answered");
        assert_eq!(response.status(), 401, "{name}");
        bodies.push(problem(response, 401).await);
    }
    assert!(
        bodies.windows(2).all(|pair| pair[0] == pair[1]),
        "one uniform body: {bodies:?}"
    );
    assert_eq!(app.event_count().await, before, "no event appended");

    // The control: the same request with a genuine token succeeds.
    let response = app
        .put("/inventory", &hs256(&claims()))
        .json(&stock())
        .send()
        .await
        .expect("answered");
    assert_eq!(response.status(), 204);
}

#[tokio::test]
async fn given_no_header_or_a_query_token_when_commanding_then_401() {
    let app = TestApp::start().await;
    let before = app.event_count().await;
    let response = app
        .client
        .put(app.url("/inventory"))
        .json(&stock())
        .send()
        .await
        .expect("answered");
    problem(response, 401).await;
    let url = app.url(&format!("/inventory?access_token={}", operator(TENANT_A)));
    let response = app
        .client
        .put(url)
        .json(&stock())
        .send()
        .await
        .expect("answered");
    problem(response, 401).await;
    assert_eq!(app.event_count().await, before);
}

#[tokio::test]
async fn given_a_valid_token_of_an_unknown_tenant_when_commanding_then_403() {
    let app = TestApp::start().await;
    let before = app.event_count().await;
    let stranger = token("initech", "op-1", &[Role::Operator]);
    let response = app
        .put("/inventory", &stranger)
        .json(&stock())
        .send()
        .await
        .expect("answered");
    let body = problem(response, 403).await;
    assert_eq!(body["type"], "/problems/unknown-tenant");
    assert_eq!(app.event_count().await, before);
}

#[tokio::test]
async fn given_a_role_that_may_not_act_when_commanding_then_403() {
    let app = TestApp::start().await;
    let before = app.event_count().await;
    for roles in [
        &[Role::Customer][..],
        &[Role::Auditor],
        &[Role::Analyst],
        &[],
    ] {
        let caller = token(TENANT_A, "someone", roles);
        let response = app
            .put("/inventory", &caller)
            .json(&stock())
            .send()
            .await
            .expect("answered");
        problem(response, 403).await;
    }
    assert_eq!(app.event_count().await, before);
}

/// The role is checked before the body or the query is read: a caller who may not act gets
/// 403 whatever it sent, not a 400 about a request it had no right to make.
#[tokio::test]
async fn given_a_role_that_may_not_act_and_a_bad_request_when_sending_then_403() {
    let app = TestApp::start().await;
    let before = app.event_count().await;
    let customer = token(TENANT_A, "someone", &[Role::Customer]);
    let auditor = token(TENANT_A, "someone", &[Role::Auditor]);
    let requests = [
        app.put("/inventory", &customer).body("{not json"),
        app.put("/inventory", &customer)
            .header("content-type", "text/plain")
            .body("x"),
        app.post("/products", &customer).json(&json!({"sku": 7})),
        app.post("/orders", &auditor)
            .json(&json!({"lines": "none"})),
        app.get("/orders?status=placed&status=canceled")
            .bearer_auth(&auditor),
    ];
    for request in requests {
        let response = request.send().await.expect("answered");
        problem(response, 403).await;
    }
    assert_eq!(app.event_count().await, before);
}

#[tokio::test]
async fn given_rs256_configured_when_tokens_arrive_then_only_rs256_signatures_pass() {
    let app = TestApp::start_rs256().await;
    let before = app.event_count().await;
    let confused = raw_token(
        &json!({"alg": "HS256", "typ": "JWT"}),
        &claims(),
        Some(PUBLIC_PEM),
    );
    let response = app
        .put("/inventory", &confused)
        .json(&stock())
        .send()
        .await
        .expect("answered");
    problem(response, 401).await;
    let response = app
        .put("/inventory", &hs256(&claims()))
        .json(&stock())
        .send()
        .await
        .expect("answered");
    problem(response, 401).await;
    assert_eq!(app.event_count().await, before);

    let key = EncodingKey::from_rsa_pem(PRIVATE_PEM).expect("fixture key");
    let genuine =
        jsonwebtoken::encode(&Header::new(Algorithm::RS256), &claims(), &key).expect("signable");
    let response = app
        .put("/inventory", &genuine)
        .json(&stock())
        .send()
        .await
        .expect("answered");
    assert_eq!(response.status(), 204);
    assert!(app.event_count().await > before);
}
