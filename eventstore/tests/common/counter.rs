//! A tiny test aggregate: a counter whose state depends on the order of its events.

use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use serde::{Deserialize, Serialize};

#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub struct Counter {
    pub value: i64,
    pub events: u64,
    /// Order-sensitive fingerprint of every amount applied.
    pub digest: u64,
    pub notes: Vec<(String, String)>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum CounterCommand {
    Add(i64),
    AddMany(Vec<i64>),
    /// Rejected when the value is below the amount (a "stock" check).
    Take(i64),
    Note(String),
    Noop,
    /// Adds, then panics (a handler bug halfway through a decision).
    AddThenPanic(i64),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum CounterEvent {
    Added {
        amount: i64,
    },
    /// v2 (v1 was `{"note": ..}` without a language).
    Noted {
        text: String,
        lang: String,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum CounterError {
    #[error("not enough: have {have}, asked {asked}")]
    NotEnough { have: i64, asked: i64 },
}

impl DomainEvent for CounterEvent {
    fn event_type(&self) -> String {
        match self {
            Self::Added { .. } => "counter.added",
            Self::Noted { .. } => "counter.noted",
        }
        .to_owned()
    }

    fn event_version(&self) -> String {
        match self {
            Self::Added { .. } => "1",
            Self::Noted { .. } => "2",
        }
        .to_owned()
    }
}

impl Aggregate for Counter {
    const TYPE: &'static str = "Counter";
    type Command = CounterCommand;
    type Event = CounterEvent;
    type Error = CounterError;
    type Services = ();

    async fn handle(
        &mut self,
        command: Self::Command,
        _services: &Self::Services,
        sink: &EventSink<Self>,
    ) -> Result<(), Self::Error> {
        match command {
            CounterCommand::Add(amount) => sink.write(CounterEvent::Added { amount }, self).await,
            CounterCommand::AddMany(amounts) => {
                for amount in amounts {
                    sink.write(CounterEvent::Added { amount }, self).await;
                }
            }
            CounterCommand::Take(amount) => {
                if self.value < amount {
                    return Err(CounterError::NotEnough {
                        have: self.value,
                        asked: amount,
                    });
                }
                sink.write(CounterEvent::Added { amount: -amount }, self)
                    .await;
            }
            CounterCommand::Note(text) => {
                sink.write(
                    CounterEvent::Noted {
                        text,
                        lang: "en".into(),
                    },
                    self,
                )
                .await;
            }
            CounterCommand::Noop => {}
            CounterCommand::AddThenPanic(amount) => {
                sink.write(CounterEvent::Added { amount }, self).await;
                panic!("a handler bug after adding {amount}");
            }
        }
        Ok(())
    }

    fn apply(&mut self, event: Self::Event) {
        self.events += 1;
        match event {
            CounterEvent::Added { amount } => {
                self.value = self.value.wrapping_add(amount);
                self.digest = self
                    .digest
                    .wrapping_mul(1_000_003)
                    .wrapping_add(amount as u64);
            }
            CounterEvent::Noted { text, lang } => self.notes.push((text, lang)),
        }
    }
}
