//! Per-stream slots: one async mutex per stream (commands on a stream run one at a time in
//! this process) guarding that stream's cached aggregate.
//!
//! The aggregate sits behind an `Arc`, so a reader (`CommandExecutor::current`) takes a
//! snapshot by copying a pointer, and the command path mutates it in place with
//! `Arc::make_mut`, which copies only while a reader still holds the previous snapshot.
//!
//! Slots live in a sharded map bounded by an approximate LRU: when a shard grows past its
//! share of the capacity, the least recently used slots that nobody holds are dropped (a
//! held slot is never dropped, so two commands can never run on two copies of one stream).

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::{Arc, Mutex, PoisonError};

use crate::chain::Hash;
use crate::stream::StreamId;

const SHARDS: usize = 64;

/// A folded aggregate trusted to be at `version` (its last applied sequence), with the chain
/// hash of that event (the `prev_hash` of the next append).
#[derive(Debug)]
pub(crate) struct Cached<A> {
    /// Shared with the readers' snapshots; mutate only through `Arc::make_mut`.
    pub aggregate: Arc<A>,
    pub version: u64,
    pub head_hash: Option<Hash>,
}

struct Entry<S> {
    slot: Arc<S>,
    last_used: u64,
}

struct Shard<S> {
    entries: HashMap<StreamId, Entry<S>>,
    clock: u64,
}

/// The slots `S` of the streams in use (the executor's slot holds the cached aggregate and
/// the commands queued behind the one running).
pub(crate) struct StreamSlots<S> {
    shards: Box<[Mutex<Shard<S>>]>,
    per_shard: usize,
    hasher: RandomState,
}

impl<S: Default> StreamSlots<S> {
    /// Room for about `capacity` cached streams (at least one per shard).
    pub fn new(capacity: usize) -> Self {
        let shards = (0..SHARDS)
            .map(|_| {
                Mutex::new(Shard {
                    entries: HashMap::new(),
                    clock: 0,
                })
            })
            .collect();
        Self {
            shards,
            per_shard: capacity.div_ceil(SHARDS).max(1),
            hasher: RandomState::new(),
        }
    }

    /// The slot of `stream`, created empty on first use.
    pub fn slot(&self, stream: &StreamId) -> Arc<S> {
        let index = usize::try_from(self.hasher.hash_one(stream) % SHARDS as u64).unwrap_or(0);
        // A poisoned shard only means a panic elsewhere while the map was consistent.
        let mut shard = self.shards[index]
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        shard.clock += 1;
        let now = shard.clock;
        let slot = match shard.entries.get_mut(stream) {
            Some(entry) => {
                entry.last_used = now;
                Arc::clone(&entry.slot)
            }
            None => {
                let slot = Arc::new(S::default());
                shard.entries.insert(
                    stream.clone(),
                    Entry {
                        slot: Arc::clone(&slot),
                        last_used: now,
                    },
                );
                slot
            }
        };
        if shard.entries.len() > self.per_shard {
            evict(&mut shard, self.per_shard);
        }
        slot
    }

    /// Number of streams with a slot.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|shard| {
                shard
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .entries
                    .len()
            })
            .sum()
    }
}

/// Drops the least recently used idle slots until the shard is at three quarters of its
/// share (so eviction work is amortised over many inserts).
fn evict<S>(shard: &mut Shard<S>, per_shard: usize) {
    let target = (per_shard * 3 / 4).max(1);
    let mut idle: Vec<(u64, StreamId)> = shard
        .entries
        .iter()
        // Only the map holds an idle slot; the caller's clone keeps the new slot alive.
        .filter(|(_, entry)| Arc::strong_count(&entry.slot) == 1)
        .map(|(stream, entry)| (entry.last_used, stream.clone()))
        .collect();
    idle.sort_unstable_by_key(|(last_used, _)| *last_used);
    let excess = shard.entries.len().saturating_sub(target);
    for (_, stream) in idle.into_iter().take(excess) {
        shard.entries.remove(&stream);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stream(n: usize) -> StreamId {
        StreamId::new("t", format!("k{n}")).expect("valid")
    }

    #[test]
    fn given_the_same_stream_when_asked_twice_then_the_same_slot_is_returned() {
        let slots = StreamSlots::<u32>::new(10);
        assert!(Arc::ptr_eq(
            &slots.slot(&stream(1)),
            &slots.slot(&stream(1))
        ));
    }

    #[test]
    fn given_many_streams_when_over_capacity_then_idle_slots_are_evicted_and_held_ones_kept() {
        let slots = StreamSlots::<u32>::new(SHARDS * 4);
        let held = slots.slot(&stream(0));
        for n in 1..10_000 {
            drop(slots.slot(&stream(n)));
        }
        assert!(slots.len() <= SHARDS * 4 + SHARDS, "len = {}", slots.len());
        assert!(Arc::ptr_eq(&held, &slots.slot(&stream(0))));
    }
}
