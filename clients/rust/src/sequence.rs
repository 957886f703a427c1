//! Event numbers of one subscription: which event to hand on, which to drop as a repeat,
//! and which range is missing and must be fetched with `$events` first.

/// What to do with an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Hand it on.
    Deliver,
    /// Already handed on (a redelivery): drop it.
    Skip,
    /// Fetch `since..=until` with `$events`, then hand it on.
    FillThenDeliver {
        /// First missed number.
        since: u64,
        /// Last missed number.
        until: u64,
    },
}

/// The position of one subscription: the highest event number handed on (or given up
/// as lost).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Sequence {
    last: Option<u64>,
}

impl Sequence {
    /// A sequence that has handed on everything up to `last` (`None`: nothing yet, so
    /// the first handshake sets the start).
    pub fn after(last: Option<u64>) -> Self {
        Self { last }
    }

    /// The highest number handed on.
    pub fn last(&self) -> Option<u64> {
        self.last
    }

    /// A handshake or heartbeat said `count` events have happened: the range missed, if
    /// any. The first one only sets the start (events before the client are not its).
    pub fn on_status(&mut self, count: u64) -> Option<(u64, u64)> {
        match self.last {
            None => {
                self.last = Some(count);
                None
            }
            Some(last) if count > last => Some((last + 1, count)),
            Some(_) => None,
        }
    }

    /// An event numbered `number` arrived.
    pub fn on_event(&self, number: u64) -> Step {
        match self.last {
            None => Step::Deliver,
            Some(last) if number <= last => Step::Skip,
            Some(last) if number == last + 1 => Step::Deliver,
            Some(last) => Step::FillThenDeliver { since: last + 1, until: number - 1 },
        }
    }

    /// Everything up to `number` has been handed on (or reported lost).
    pub fn delivered(&mut self, number: u64) {
        self.last = Some(self.last.map_or(number, |last| last.max(number)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gaps_are_filled_and_repeats_dropped() {
        let mut sequence = Sequence::default();
        assert_eq!(sequence.on_status(3), None, "the first handshake only sets the start");
        assert_eq!(sequence.on_event(4), Step::Deliver);
        sequence.delivered(4);
        assert_eq!(sequence.on_event(4), Step::Skip, "a redelivery");
        assert_eq!(sequence.on_event(7), Step::FillThenDeliver { since: 5, until: 6 });
        sequence.delivered(7);
        assert_eq!(sequence.on_status(7), None);
        assert_eq!(sequence.on_status(9), Some((8, 9)), "a handshake after a reconnect shows a gap");
        assert_eq!(Sequence::after(Some(2)).on_status(5), Some((3, 5)), "a resumed run replays what followed");
        assert_eq!(Sequence::default().on_event(5), Step::Deliver, "nothing to compare with yet");
    }
}
