//! The sliding window behind the registry's average and p95 gauges.
//!
//! Run times are counted in time slots (a tenth of the window each) of log buckets that are
//! 2 % wide; a slot older than the window is dropped when a newer one starts, so a window holds
//! at most eleven slots whatever the traffic. The gauges read the slots that overlap the last
//! window: a slow spell shows within a slot and clears one window after it ended.

use std::collections::{BTreeMap, VecDeque};
use std::sync::OnceLock;
use std::time::Duration;
use tokio::time::Instant;

use super::collector::{average, bucket_midpoint, bucket_of};

/// Slots per window.
const SLOTS: u64 = 10;

/// One window's run times; shared by every scope filed under one registry name.
#[derive(Default)]
pub(crate) struct Window {
    slots: VecDeque<Slot>,
}

struct Slot {
    /// The slot's number since the registry's origin.
    number: u64,
    count: u64,
    total: Duration,
    /// Samples per log bucket (see `bucket_of`).
    buckets: BTreeMap<u16, u64>,
}

/// What the gauges report for one window.
#[derive(Default, Clone, Copy, Debug, PartialEq)]
pub(crate) struct WindowStats {
    pub(crate) count: u64,
    pub(crate) total: Duration,
    pub(crate) average: Duration,
    pub(crate) p95: Duration,
}

/// The instant slot numbers count from.
fn origin() -> Instant {
    static ORIGIN: OnceLock<Instant> = OnceLock::new();
    *ORIGIN.get_or_init(Instant::now)
}

fn slot_number(at: Instant, window: Duration) -> u64 {
    let slot = (window / SLOTS as u32).max(Duration::from_millis(1));
    let since = at.saturating_duration_since(origin());
    u64::try_from(since.as_nanos() / slot.as_nanos()).unwrap_or(u64::MAX)
}

impl Window {
    /// Counts a run time that ended `at`, in a window of length `window`.
    pub(crate) fn record(&mut self, at: Instant, run: Duration, window: Duration) {
        let number = slot_number(at, window);
        let nanos = u64::try_from(run.as_nanos()).unwrap_or(u64::MAX);
        let bucket = u16::try_from(bucket_of(nanos)).unwrap_or(u16::MAX);
        // Tasks end roughly in order: the slot is the newest one or close to it.
        let position = self.slots.iter().rposition(|s| s.number <= number);
        let slot = match position {
            Some(i) if self.slots[i].number == number => &mut self.slots[i],
            _ => {
                let at = position.map_or(0, |i| i + 1);
                self.slots.insert(
                    at,
                    Slot {
                        number,
                        count: 0,
                        total: Duration::ZERO,
                        buckets: BTreeMap::new(),
                    },
                );
                &mut self.slots[at]
            }
        };
        slot.count += 1;
        slot.total = slot.total.saturating_add(run);
        *slot.buckets.entry(bucket).or_insert(0) += 1;
        self.expire(number);
    }

    /// Drops the slots that lie wholly before the window ending in slot `newest`.
    fn expire(&mut self, newest: u64) {
        let oldest = newest.saturating_sub(SLOTS);
        while self.slots.front().is_some_and(|s| s.number < oldest) {
            self.slots.pop_front();
        }
    }

    /// Average and p95 of the run times that ended in the window ending `now`.
    pub(crate) fn stats(&self, now: Instant, window: Duration) -> WindowStats {
        let newest = slot_number(now, window);
        let oldest = newest.saturating_sub(SLOTS - 1);
        let mut merged: BTreeMap<u16, u64> = BTreeMap::new();
        let mut count = 0;
        let mut total = Duration::ZERO;
        for slot in self.slots.iter().filter(|s| s.number >= oldest) {
            count += slot.count;
            total = total.saturating_add(slot.total);
            for (&bucket, &n) in &slot.buckets {
                *merged.entry(bucket).or_insert(0) += n;
            }
        }
        let mut p95 = Duration::ZERO;
        if count > 0 {
            let rank = ((0.95 * count as f64).ceil() as u64).clamp(1, count);
            let mut seen = 0;
            for (&bucket, &n) in &merged {
                seen += n;
                if seen >= rank {
                    p95 = Duration::from_nanos(bucket_midpoint(usize::from(bucket)));
                    break;
                }
            }
        }
        WindowStats {
            count,
            total,
            average: average(total, count),
            p95,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINUTE: Duration = Duration::from_secs(60);

    fn within_two_percent(actual: Duration, expected: Duration) -> bool {
        let (a, e) = (actual.as_secs_f64(), expected.as_secs_f64());
        ((a - e) / e).abs() < 0.02
    }

    #[test]
    fn a_slow_spell_shows_and_then_clears() {
        let window = 5 * MINUTE;
        let start = origin() + Duration::from_secs(3600);
        let mut w = Window::default();
        // An hour of fast tasks...
        for second in 0..3600 {
            w.record(
                start + Duration::from_secs(second),
                Duration::from_millis(2),
                window,
            );
        }
        let fast = w.stats(start + Duration::from_secs(3600), window);
        assert!(within_two_percent(fast.p95, Duration::from_millis(2)));
        // Nine full slots of 30 s: the slot in progress has just begun.
        assert_eq!(fast.count, 270);
        // ...then one minute of slow ones: the p95 follows at once.
        let slow_start = start + Duration::from_secs(3600);
        for second in 0..60 {
            w.record(
                slow_start + Duration::from_secs(second),
                Duration::from_secs(2),
                window,
            );
        }
        let during = w.stats(slow_start + MINUTE, window);
        assert!(within_two_percent(during.p95, Duration::from_secs(2)));
        // Six minutes of fast tasks later the slow minute has left the window.
        for second in 60..420 {
            w.record(
                slow_start + Duration::from_secs(second),
                Duration::from_millis(2),
                window,
            );
        }
        let after = w.stats(slow_start + Duration::from_secs(420), window);
        assert!(within_two_percent(after.p95, Duration::from_millis(2)));
        assert!(w.slots.len() <= SLOTS as usize + 1);
    }

    #[test]
    fn an_idle_window_reports_zero() {
        let window = MINUTE;
        let start = origin() + Duration::from_secs(10);
        let mut w = Window::default();
        w.record(start, Duration::from_secs(1), window);
        let later = w.stats(start + 2 * window, window);
        assert_eq!(later, WindowStats::default());
    }
}
