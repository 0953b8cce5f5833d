//! Black-box: `commerce token` prints a token, and with DATABASE_URL set it registers the
//! tenant, so the contract's flow (mint a token, call the API) is served rather than refused
//! as an unknown tenant.

use std::process::{Command, Output};

use commerce_devstack::testkit::TestDatabase;

const SECRET: &str = "a-test-secret-of-at-least-32-bytes!!";

fn token(tenant: &str, database_url: Option<&str>) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_commerce"));
    command
        .args(["token", "--tenant", tenant, "--role", "operator"])
        .env("COMMERCE_JWT_SECRET", SECRET)
        .env_remove("DATABASE_URL");
    if let Some(url) = database_url {
        command.env("DATABASE_URL", url);
    }
    command.output().expect("the binary runs")
}

async fn registered(db: &TestDatabase, tenant: &str) -> bool {
    sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM tenants WHERE tenant_id = $1)")
        .bind(tenant)
        .fetch_one(db.pool())
        .await
        .expect("query the registry")
}

#[tokio::test]
async fn given_a_database_when_a_token_is_minted_then_its_tenant_is_registered() {
    let db = TestDatabase::create()
        .await
        .expect("a test database (is DATABASE_URL set?)");
    commerce_api::tenants::migrate(db.pool())
        .await
        .expect("tenant registry");
    assert!(!registered(&db, "acme").await);

    let minted = token("acme", Some(db.url()));
    assert!(
        minted.status.success(),
        "{}",
        String::from_utf8_lossy(&minted.stderr)
    );
    let printed = String::from_utf8_lossy(&minted.stdout);
    assert_eq!(printed.trim().split('.').count(), 3, "a JWT: {printed}");
    assert!(registered(&db, "acme").await);

    // Minting again changes nothing and still prints a token.
    let again = token("acme", Some(db.url()));
    assert!(again.status.success());
    assert!(!again.stdout.is_empty());
}

#[test]
fn given_no_database_when_a_token_is_minted_then_it_is_printed_alone() {
    let minted = token("acme", None);
    assert!(minted.status.success());
    assert_eq!(
        String::from_utf8_lossy(&minted.stdout)
            .trim()
            .split('.')
            .count(),
        3
    );
    assert!(!String::from_utf8_lossy(&minted.stderr).contains("registered"));
}

#[test]
fn given_an_unreachable_database_when_a_token_is_minted_then_it_warns_and_prints_it() {
    let minted = token("acme", Some("postgres://nobody@127.0.0.1:1/none"));
    assert!(minted.status.success());
    assert!(!minted.stdout.is_empty());
    let stderr = String::from_utf8_lossy(&minted.stderr);
    assert!(stderr.contains("not registered"), "{stderr}");
}
