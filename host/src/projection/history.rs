//! A short history of each projection's progress — position, lag and
//! rate, sampled once a second for the last ten minutes — kept in memory
//! for the console's charts (`GET /projections/{name}/history`).

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

use serde::Serialize;

/// How often a sample is taken.
pub const INTERVAL: Duration = Duration::from_secs(1);
/// Samples kept per projection: ten minutes.
pub const KEPT: usize = 600;

/// One sample of a projection's progress.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Sample {
    /// When it was taken: milliseconds since the Unix epoch.
    pub at: i64,
    /// The projection's position.
    pub position: u64,
    /// The head of the log.
    pub head: u64,
    /// Events behind the head.
    pub lag: u64,
    /// How old the oldest event not yet applied is, in milliseconds (0
    /// when caught up).
    pub lag_ms: i64,
    /// Events applied per second, lately.
    pub events_per_second: f64,
}

/// Samples by projection name.
#[derive(Default)]
pub struct History {
    samples: Mutex<HashMap<String, VecDeque<Sample>>>,
}

impl History {
    /// Records `sample` of `name`, dropping the oldest past [`KEPT`].
    pub fn record(&self, name: &str, sample: Sample) {
        let mut all = self.samples.lock().unwrap_or_else(|p| p.into_inner());
        let kept = all.entry(name.to_owned()).or_default();
        if kept.len() == KEPT {
            kept.pop_front();
        }
        kept.push_back(sample);
    }

    /// The samples of `name`, oldest first.
    pub fn of(&self, name: &str) -> Vec<Sample> {
        let all = self.samples.lock().unwrap_or_else(|p| p.into_inner());
        all.get(name).map(|s| s.iter().copied().collect()).unwrap_or_default()
    }

    /// Forgets the projections not in `names` (removed ones).
    pub fn retain(&self, names: &[String]) {
        self.samples.lock().unwrap_or_else(|p| p.into_inner()).retain(|n, _| names.contains(n));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_last_samples_in_order() {
        let h = History::default();
        for i in 0..KEPT as u64 + 5 {
            h.record(
                "a",
                Sample { at: i as i64, position: i, head: i, lag: 0, lag_ms: 0, events_per_second: 0.0 },
            );
        }
        let s = h.of("a");
        assert_eq!((s.len(), s[0].position, s[KEPT - 1].position), (KEPT, 5, KEPT as u64 + 4));
        h.retain(&[]);
        assert!(h.of("a").is_empty());
    }
}
