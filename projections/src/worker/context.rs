//! The consumer context: on every assignment it reads the group's stored offsets from PostgreSQL
//! and starts each partition there; on revocation it forgets the partitions, so records still in
//! flight for them are dropped. It also turns librdkafka statistics into lag gauges.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rdkafka::client::ClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::statistics::Statistics;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::types::RDKafkaRespErr;
use sqlx::PgPool;

use super::offsets;
use crate::error::ProjectionError;

/// What this worker knows of a partition it owns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Owned {
    /// The `next_offset` stored in PostgreSQL as this worker last saw it (`None`: no row yet).
    pub expected: Option<i64>,
    /// A compare-and-set on the offset failed: another worker took over; ignore until reassigned.
    pub fenced: bool,
}

#[derive(Debug)]
pub(super) struct WorkerContext {
    pool: PgPool,
    group: String,
    runtime: tokio::runtime::Handle,
    owned: Mutex<HashMap<(String, i32), Owned>>,
    failure: Mutex<Option<String>>,
}

impl WorkerContext {
    pub(super) fn new(pool: PgPool, group: String, runtime: tokio::runtime::Handle) -> Self {
        Self {
            pool,
            group,
            runtime,
            owned: Mutex::new(HashMap::new()),
            failure: Mutex::new(None),
        }
    }

    pub(super) fn owned(&self, topic: &str, partition: i32) -> Option<Owned> {
        self.lock_owned()
            .get(&(topic.to_owned(), partition))
            .copied()
    }

    pub(super) fn update(&self, topic: &str, partition: i32, owned: Owned) {
        if let Some(entry) = self.lock_owned().get_mut(&(topic.to_owned(), partition)) {
            *entry = owned;
        }
    }

    /// The partitions this worker consumes: assigned and not fenced.
    pub(super) fn consuming(&self) -> Vec<(String, i32)> {
        self.lock_owned()
            .iter()
            .filter(|(_, owned)| !owned.fenced)
            .map(|(key, _)| key.clone())
            .collect()
    }

    /// Set when an assignment could not be honoured (the database stayed unreachable for
    /// [`ASSIGN_PATIENCE`]): the worker must stop rather than read from an unknown position.
    pub(super) fn failure(&self) -> Option<String> {
        self.failure
            .lock()
            .map(|failure| failure.clone())
            .unwrap_or(None)
    }

    fn lock_owned(&self) -> std::sync::MutexGuard<'_, HashMap<(String, i32), Owned>> {
        // A poisoned map only means a panic elsewhere mid-update; the data is plain and still usable.
        self.owned
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn assign(&self, consumer: &BaseConsumer<Self>, tpl: &mut TopicPartitionList) {
        let partitions: Vec<(String, i32)> = tpl
            .elements()
            .iter()
            .map(|elem| (elem.topic().to_owned(), elem.partition()))
            .collect();
        // The callback runs inside the consumer's poll on a runtime thread: leave the async
        // context to wait for PostgreSQL (the worker needs a multi-threaded runtime).
        let stored = tokio::task::block_in_place(|| {
            self.runtime
                .block_on(load_patiently(&self.pool, &self.group, &partitions))
        });
        let stored = match stored {
            Ok(stored) => stored,
            Err(error) => {
                tracing::error!(%error, "cannot read stored offsets; not taking the assignment");
                if let Ok(mut failure) = self.failure.lock() {
                    *failure = Some(error.to_string());
                }
                return;
            }
        };
        let mut owned = self.lock_owned();
        for (topic, partition) in partitions {
            let expected = stored.get(&(topic.clone(), partition)).copied();
            let offset = expected.map_or(Offset::Beginning, Offset::Offset);
            if let Err(error) = tpl.set_partition_offset(&topic, partition, offset) {
                tracing::error!(%error, %topic, partition, "cannot set the start offset");
            }
            owned.insert(
                (topic, partition),
                Owned {
                    expected,
                    fenced: false,
                },
            );
        }
        drop(owned);
        if let Err(error) = consumer.assign(tpl) {
            tracing::error!(%error, "assignment failed");
        }
        tracing::info!(
            partitions = tpl.count(),
            "partitions assigned at their stored offsets"
        );
    }
}

/// How long an assignment waits for PostgreSQL (a restart, a failover) before the worker gives up.
const ASSIGN_PATIENCE: Duration = Duration::from_secs(120);

/// Reads the stored offsets, retrying with a growing pause while the database is unreachable:
/// a partition is never started from an unknown position, and a short outage must not end the
/// worker either.
async fn load_patiently(
    pool: &PgPool,
    group: &str,
    partitions: &[(String, i32)],
) -> Result<HashMap<(String, i32), i64>, ProjectionError> {
    let started = Instant::now();
    let mut pause = Duration::from_millis(250);
    loop {
        match offsets::load(pool, group, partitions).await {
            Ok(stored) => return Ok(stored),
            Err(error) if started.elapsed() < ASSIGN_PATIENCE => {
                tracing::warn!(%error, "stored offsets not readable yet; retrying");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(5));
            }
            Err(error) => return Err(error),
        }
    }
}

impl ClientContext for WorkerContext {
    fn stats(&self, statistics: Statistics) {
        for (topic, stats) in &statistics.topics {
            for (partition, p) in &stats.partitions {
                if *partition < 0 || p.consumer_lag < 0 {
                    continue;
                }
                metrics::gauge!(
                    "projection_consumer_lag",
                    "group" => self.group.clone(),
                    "topic" => topic.clone(),
                    "partition" => partition.to_string()
                )
                .set(p.consumer_lag as f64);
            }
        }
    }
}

impl ConsumerContext for WorkerContext {
    fn rebalance(
        &self,
        consumer: &BaseConsumer<Self>,
        err: RDKafkaRespErr,
        tpl: &mut TopicPartitionList,
    ) {
        match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => self.assign(consumer, tpl),
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                self.lock_owned().clear();
                if let Err(error) = consumer.unassign() {
                    tracing::error!(%error, "unassign failed");
                }
                tracing::info!("partitions revoked");
            }
            other => {
                tracing::error!(?other, "rebalance error");
                self.lock_owned().clear();
                if let Err(error) = consumer.unassign() {
                    tracing::error!(%error, "unassign failed");
                }
            }
        }
    }
}
