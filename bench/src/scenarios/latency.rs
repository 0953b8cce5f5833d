//! (c) End-to-end latency at a steady rate: each request sets the stock of a new SKU; from the
//! moment the command is accepted (its 204 arrived) until the query API shows that stock.
//! The query carries the command's `Consistency-Token`, so it waits server-side for the read
//! model; a 404 or 503 is retried every millisecond (50 ms after a 503 "overloaded") up to
//! [`VISIBLE_WITHIN`].

use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::header::{AUTHORIZATION, CONTENT_TYPE};
use serde::Serialize;

use super::{Bench, CONSISTENCY_TOKEN, consistency_token};
use crate::load::{Outcome, open_loop, transport};
use crate::stats::{Percentiles, rate};

/// How long a query refused as overloaded waits before it asks again.
const OVERLOADED_PAUSE: Duration = Duration::from_millis(50);
/// A command not visible after this long counts as failed.
const VISIBLE_WITHIN: Duration = Duration::from_secs(10);

/// The results of (c).
#[derive(Debug, Clone, Serialize)]
pub struct Latency {
    /// The offered rate (half of (a)'s peak).
    pub target_rate: u64,
    /// The rate at which commands became visible.
    pub achieved_rate: f64,
    /// Command accepted → visible through the query API.
    pub accepted_to_visible: Percentiles,
    pub failed: u64,
    pub failures: std::collections::BTreeMap<String, u64>,
}

/// Runs (c) at `target_rate` commands/s.
pub async fn run(bench: &Bench, target_rate: u64) -> anyhow::Result<Latency> {
    let client = bench.client.clone();
    let base: Arc<str> = bench.engine.url("").into();
    let auth: Arc<str> = bench.operator.clone().into();
    let run = open_loop(target_rate, bench.plan.latency_duration, move |n| {
        let (client, base, auth) = (client.clone(), Arc::clone(&base), Arc::clone(&auth));
        async move { command_then_query(&client, &base, &auth, n).await }
    })
    .await;
    // Above what the read side sustains, (c) leaves a backlog: the next phase must not pay
    // for it.
    bench.settle().await?;
    let latency = Latency {
        target_rate,
        achieved_rate: rate(run.ok, run.elapsed),
        accepted_to_visible: Percentiles::of_micros(&run.latencies_us),
        failed: run.failed,
        failures: run.failures,
    };
    eprintln!(
        "(c) at {target_rate}/s: p50 {:.1} ms, p99 {:.1} ms, p99.9 {:.1} ms, {} failed",
        latency.accepted_to_visible.p50_ms,
        latency.accepted_to_visible.p99_ms,
        latency.accepted_to_visible.p999_ms,
        latency.failed
    );
    Ok(latency)
}

async fn command_then_query(client: &reqwest::Client, base: &str, auth: &str, n: u64) -> Outcome {
    let sku = format!("L-{n}");
    let quantity = n + 1;
    let response = client
        .put(format!("{base}/inventory"))
        .header(AUTHORIZATION, auth)
        .header(CONTENT_TYPE, "application/json")
        .body(format!(r#"{{"sku":"{sku}","quantity":{quantity}}}"#))
        .send()
        .await;
    let response = match response {
        Ok(response) if response.status().as_u16() == 204 => response,
        Ok(response) => {
            return Outcome::Failed(format!("command HTTP {}", response.status().as_u16()));
        }
        Err(error) => return transport(&error),
    };
    let accepted = Instant::now();
    let token = consistency_token(&response);
    let mut last = "no answer".to_owned();
    while accepted.elapsed() < VISIBLE_WITHIN {
        let mut query = client
            .get(format!("{base}/inventory/{sku}"))
            .header(AUTHORIZATION, auth);
        if let Some(token) = token {
            query = query.header(CONSISTENCY_TOKEN, token);
        }
        match query.send().await {
            Ok(answer) if answer.status().is_success() => {
                let body: serde_json::Value = answer.json().await.unwrap_or_default();
                if body["on_hand"].as_u64() == Some(quantity) {
                    return Outcome::Ok(Some(accepted.elapsed()));
                }
                last = "200 with an older stock".to_owned();
            }
            Ok(answer) if answer.status().as_u16() == 503 => {
                let problem = answer.text().await.unwrap_or_default();
                if problem.contains("/problems/overloaded") {
                    // Refused at once: retrying every millisecond would only add to the load.
                    last = "HTTP 503 (overloaded)".to_owned();
                    tokio::time::sleep(OVERLOADED_PAUSE).await;
                } else {
                    last = "HTTP 503".to_owned();
                }
            }
            Ok(answer) if answer.status().as_u16() == 404 => {
                last = "HTTP 404".to_owned();
            }
            Ok(answer) => {
                return Outcome::Failed(format!("query HTTP {}", answer.status().as_u16()));
            }
            Err(error) => return transport(&error),
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    Outcome::Failed(format!("not visible within 10 s (last answer: {last})"))
}
