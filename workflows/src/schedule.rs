//! Which reactions may run at the same time, and how far the cursor may move.
//!
//! Reactions to independent flows do not wait for each other: while one participant's
//! payment is authorized, the next participant's stock is reserved. What must stay ordered is
//! the flow: everything the checkout of one order did before its cancellation has to be done
//! before the compensation starts, and a campaign's close must see every participant event
//! before it. Each event therefore gets a [`Footprint`]:
//! - [`Footprint::Flow`]: the order or participant the reaction is about. It starts only
//!   once every earlier event of the same flow has been reacted to;
//! - [`Footprint::Barrier`]: events that concern many flows at once (a campaign closing or
//!   failing, stock given back that a later flow may be counting on) or whose flow is
//!   unknown. It waits for every earlier event, and every later
//!   event waits for it: exactly the order of a single reader;
//! - [`Footprint::Idle`]: no reaction at all; it only keeps its place behind a barrier.
//!
//! A [`Window`] holds the events read but not yet done, in log order. An event may start when
//! its footprint conflicts with no earlier event still in the window. The cursor only passes
//! the longest done prefix, so a crash replays whatever was still running (reactions replay
//! idempotently) and never skips anything.

use std::collections::{HashSet, VecDeque};

use commerce_eventstore::LogCursor;
use uuid::Uuid;

/// What a reaction must stay ordered with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Footprint {
    /// No reaction: nothing waits for it, and it waits only behind a barrier.
    Idle,
    /// A reaction about one order or participant.
    Flow(Uuid),
    /// A reaction that runs alone, in log order with everything else.
    Barrier,
}

/// An event's place in the window, handed back by [`Window::finish`].
pub(crate) type Ticket = u64;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Waiting,
    Running,
    Done,
}

#[derive(Debug)]
struct Slot {
    ticket: Ticket,
    after: LogCursor,
    footprint: Footprint,
    state: State,
}

/// The events read but not yet passed by the cursor, in log order.
#[derive(Debug, Default)]
pub(crate) struct Window {
    slots: VecDeque<Slot>,
    next_ticket: Ticket,
    running: usize,
}

impl Window {
    /// Adds the next event of the log (`after` is the cursor just past it).
    pub fn push(&mut self, after: LogCursor, footprint: Footprint) -> Ticket {
        let ticket = self.next_ticket;
        self.next_ticket += 1;
        self.slots.push_back(Slot {
            ticket,
            after,
            footprint,
            state: State::Waiting,
        });
        ticket
    }

    /// Marks as running, and returns, the waiting events that conflict with no earlier event
    /// still in the window, oldest first, while fewer than `limit` run.
    pub fn start(&mut self, limit: usize) -> Vec<Ticket> {
        let mut started = Vec::new();
        let mut flows_ahead = HashSet::new();
        let mut barrier_ahead = false;
        let mut anything_ahead = false;
        for slot in &mut self.slots {
            if self.running >= limit || barrier_ahead {
                break;
            }
            if slot.state == State::Done {
                continue;
            }
            let free = match slot.footprint {
                Footprint::Idle => true,
                Footprint::Flow(flow) => !flows_ahead.contains(&flow),
                Footprint::Barrier => !anything_ahead,
            };
            if slot.state == State::Waiting && free {
                slot.state = State::Running;
                self.running += 1;
                started.push(slot.ticket);
            }
            match slot.footprint {
                Footprint::Idle => {}
                Footprint::Flow(flow) => {
                    flows_ahead.insert(flow);
                    anything_ahead = true;
                }
                Footprint::Barrier => {
                    barrier_ahead = true;
                    anything_ahead = true;
                }
            }
        }
        started
    }

    /// Marks a running event done.
    pub fn finish(&mut self, ticket: Ticket) {
        let Some(first) = self.slots.front().map(|slot| slot.ticket) else {
            return;
        };
        let index = usize::try_from(ticket.wrapping_sub(first)).unwrap_or(usize::MAX);
        if let Some(slot) = self.slots.get_mut(index)
            && slot.state == State::Running
        {
            slot.state = State::Done;
            self.running -= 1;
        }
    }

    /// Drops the done events at the front; returns the cursor just past the last of them.
    pub fn pass_done(&mut self) -> Option<LogCursor> {
        let mut passed = None;
        while let Some(slot) = self.slots.front()
            && slot.state == State::Done
        {
            passed = Some(slot.after);
            self.slots.pop_front();
        }
        passed
    }

    /// Events read and not yet passed.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn running(&self) -> usize {
        self.running
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn at(position: i64) -> LogCursor {
        LogCursor {
            transaction_id: 1,
            position,
        }
    }

    fn flow(n: u128) -> Footprint {
        Footprint::Flow(Uuid::from_u128(n))
    }

    fn window(footprints: &[Footprint]) -> (Window, Vec<Ticket>) {
        let mut window = Window::default();
        let tickets = footprints
            .iter()
            .zip(1..)
            .map(|(footprint, position)| window.push(at(position), *footprint))
            .collect();
        (window, tickets)
    }

    #[test]
    fn given_independent_flows_when_starting_then_all_run_at_once() {
        let (mut window, tickets) = window(&[flow(1), flow(2), Footprint::Idle, flow(3)]);
        assert_eq!(window.start(16), tickets);
        assert_eq!(window.running(), 4);
    }

    #[test]
    fn given_two_events_of_one_flow_when_starting_then_the_second_waits_for_the_first() {
        let (mut window, t) = window(&[flow(1), flow(2), flow(1)]);
        assert_eq!(window.start(16), vec![t[0], t[1]]);
        window.finish(t[1]);
        assert!(window.start(16).is_empty());
        window.finish(t[0]);
        assert_eq!(window.start(16), vec![t[2]]);
    }

    #[test]
    fn given_a_barrier_when_starting_then_it_runs_alone_in_log_order() {
        let (mut window, t) = window(&[flow(1), Footprint::Barrier, flow(2), Footprint::Idle]);
        assert_eq!(window.start(16), vec![t[0]]);
        window.finish(t[0]);
        assert_eq!(window.start(16), vec![t[1]]);
        window.finish(t[1]);
        assert_eq!(window.start(16), vec![t[2], t[3]]);
    }

    #[test]
    fn given_a_limit_when_starting_then_no_more_than_it_run() {
        let (mut window, t) = window(&[flow(1), flow(2), flow(3)]);
        assert_eq!(window.start(2), vec![t[0], t[1]]);
        window.finish(t[0]);
        assert_eq!(window.start(2), vec![t[2]]);
    }

    #[test]
    fn given_a_later_event_done_first_when_passing_then_the_cursor_waits_for_the_earlier() {
        let (mut window, t) = window(&[flow(1), flow(2)]);
        window.start(16);
        window.finish(t[1]);
        assert_eq!(window.pass_done(), None);
        window.finish(t[0]);
        assert_eq!(window.pass_done(), Some(at(2)));
        assert_eq!(window.len(), 0);
    }

    /// Whether two events' reactions must not overlap and must finish in log order.
    fn ordered(a: Footprint, b: Footprint) -> bool {
        match (a, b) {
            (Footprint::Idle, _) | (_, Footprint::Idle) => false,
            (Footprint::Barrier, _) | (_, Footprint::Barrier) => true,
            (Footprint::Flow(x), Footprint::Flow(y)) => x == y,
        }
    }

    fn footprints() -> impl Strategy<Value = Vec<Footprint>> {
        let footprint = prop_oneof![
            4 => (0_u128..4).prop_map(flow),
            1 => Just(Footprint::Barrier),
            1 => Just(Footprint::Idle),
        ];
        proptest::collection::vec(footprint, 1..40)
    }

    proptest! {
        /// Whatever order the running reactions finish in: every event runs once, no two
        /// events of one flow (or anything beside a barrier) ever run at once, each flow runs
        /// in log order, and the cursor never passes an event that is not done.
        #[test]
        fn every_schedule_keeps_each_flow_in_log_order(
            footprints in footprints(),
            picks in proptest::collection::vec(any::<prop::sample::Index>(), 64),
            limit in 1_usize..8,
        ) {
            let (mut window, tickets) = window(&footprints);
            let mut running: Vec<Ticket> = Vec::new();
            let mut finished: Vec<Ticket> = Vec::new();
            let mut passed_up_to = 0_i64;
            let mut picks = picks.into_iter().cycle();
            loop {
                running.extend(window.start(limit));
                prop_assert!(running.len() <= limit);
                for (i, a) in running.iter().enumerate() {
                    for b in &running[i + 1..] {
                        let (fa, fb) = (footprints[*a as usize], footprints[*b as usize]);
                        prop_assert!(!ordered(fa, fb), "{fa:?} and {fb:?} ran at once");
                    }
                }
                let Some(pick) = picks.next() else { break };
                if running.is_empty() {
                    break;
                }
                let done = running.swap_remove(pick.index(running.len()));
                // Every earlier event of the same flow (and every earlier barrier) is done.
                for earlier in 0..done {
                    if ordered(footprints[earlier as usize], footprints[done as usize]) {
                        prop_assert!(finished.contains(&earlier), "{done} finished before {earlier}");
                    }
                }
                window.finish(done);
                finished.push(done);
                if let Some(cursor) = window.pass_done() {
                    prop_assert!(cursor.position > passed_up_to);
                    for ticket in 0..cursor.position {
                        prop_assert!(finished.contains(&(ticket as Ticket)));
                    }
                    passed_up_to = cursor.position;
                }
            }
            prop_assert_eq!(finished.len(), tickets.len());
            prop_assert_eq!(window.len(), 0);
        }
    }
}
