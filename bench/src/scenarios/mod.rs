//! The scenarios, one module each, sharing a [`Bench`]: the running engine, an HTTP client,
//! a pool on the run's database and the memory probe.

pub mod hot;
pub mod latency;
pub mod rebuild;
pub mod relay;
pub mod throughput;

use std::time::{Duration, Instant};

use anyhow::bail;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE};
use serde::Serialize;
use sqlx::PgPool;

use crate::engine::{Binaries, Engine, memory};
use crate::plan::Plan;
use crate::services::Services;

/// The header a command answers with and a query waits for.
pub const CONSISTENCY_TOKEN: &str = "consistency-token";
/// How long to wait for the read models to catch up between phases.
const SETTLE_WITHIN: Duration = Duration::from_secs(120);

/// What every scenario works with.
#[derive(Debug)]
pub struct Bench {
    pub plan: Plan,
    pub services: Services,
    pub binaries: Binaries,
    pub engine: Engine,
    pub client: reqwest::Client,
    pub pool: PgPool,
    /// `Bearer <operator token>`.
    pub operator: String,
}

impl Bench {
    /// Whether the engine runs the projections (without them nothing becomes queryable).
    pub fn projects(&self) -> bool {
        self.engine
            .layout
            .iter()
            .any(|name| name == "all" || name == "project")
    }

    /// The engine's summed memory now, in MiB: (current RSS, peak).
    pub fn memory_mib(&self) -> MemoryMib {
        let now = memory(&self.engine.pids());
        MemoryMib {
            rss_mib: mib(now.rss_kib),
            peak_mib: mib(now.peak_kib),
        }
    }

    /// `PUT /inventory` as the operator; returns the status and the consistency token.
    pub async fn set_stock(&self, sku: &str, quantity: u64) -> anyhow::Result<Option<i64>> {
        let response = self
            .client
            .put(self.engine.url("/inventory"))
            .header(AUTHORIZATION, &self.operator)
            .header(CONTENT_TYPE, "application/json")
            .body(format!(r#"{{"sku":"{sku}","quantity":{quantity}}}"#))
            .send()
            .await?;
        if !response.status().is_success() {
            bail!("PUT /inventory answered {}", response.status());
        }
        Ok(consistency_token(&response))
    }

    /// Waits until the read models have projected a fresh command (so the next phase does not
    /// pay for this one's backlog); a no-op without projections.
    pub async fn settle(&self) -> anyhow::Result<Duration> {
        let started = Instant::now();
        if !self.projects() {
            return Ok(started.elapsed());
        }
        let sku = format!("SETTLE-{}", uuid::Uuid::new_v4().simple());
        let token = self.set_stock(&sku, 1).await?;
        while started.elapsed() < SETTLE_WITHIN {
            let mut request = self
                .client
                .get(self.engine.url(&format!("/inventory/{sku}")))
                .header(AUTHORIZATION, &self.operator);
            if let Some(token) = token {
                request = request.header(CONSISTENCY_TOKEN, token);
            }
            if request.send().await?.status().is_success() {
                return Ok(started.elapsed());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        bail!("the read models did not catch up within {SETTLE_WITHIN:?}")
    }
}

/// A command response's `Consistency-Token`.
pub fn consistency_token(response: &reqwest::Response) -> Option<i64> {
    response
        .headers()
        .get(CONSISTENCY_TOKEN)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.trim().parse().ok())
}

/// Memory in MiB.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct MemoryMib {
    pub rss_mib: f64,
    pub peak_mib: f64,
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}
