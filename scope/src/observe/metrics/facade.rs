//! Scope metrics through the `metrics` crate: for scopes built with
//! [`metrics_facade(true)`](crate::ScopeBuilder::metrics_facade), every instrument of
//! `instruments.rs` is recorded with the `metrics` macros, into whatever recorder the
//! application installed (`metrics-exporter-prometheus`, StatsD, ...), beside its own metrics.
//!
//! Handles are taken when a scope is built, and shared by every scope of the same `scope` label
//! while the recorder in force stays the same one (registering them and describing the
//! instruments costs tens of microseconds, too much for a scope per request); the recorder's
//! handles are what a task event touches. Handles taken while no recorder is installed record
//! nothing, so the application installs its recorder before it builds such scopes.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use metrics_facade::{
    Counter, Gauge, Histogram, Recorder, Unit, counter, describe_counter, describe_gauge,
    describe_histogram, gauge, histogram, with_recorder,
};

use super::instruments::{
    BREAKER_STATE, COUNTS, Count, ENDED, INSTRUMENTS, Kind, LEVELS, Level, PERMIT_WAIT, RUN,
    SCOPE_DURATION, Sink, count_index, level_index, outcome_index, scope_label,
};
use crate::core::error::OutcomeKind;
use crate::core::scope::ScopeBuilder;
use crate::util::sync::lock;

/// The prefix of every name the facade records.
pub(crate) const PREFIX: &str = "goscope_";

/// The full names (prefix included), made once per process.
fn names() -> &'static [&'static str; INSTRUMENTS.len()] {
    static NAMES: OnceLock<[&'static str; INSTRUMENTS.len()]> = OnceLock::new();
    NAMES.get_or_init(|| {
        std::array::from_fn(|i| {
            let name: &'static str =
                Box::leak(format!("{PREFIX}{}", INSTRUMENTS[i].prometheus).into_boxed_str());
            name
        })
    })
}

/// Which recorder is in force: the address of the global one, or of the local one of
/// `metrics::with_local_recorder`.
fn recorder_in_force() -> usize {
    with_recorder(|recorder| std::ptr::from_ref::<dyn Recorder>(recorder).cast::<()>() as usize)
}

/// The handles of the scope label `label` in the recorder in force, taken (and the instruments
/// described) the first time that recorder sees the label.
pub(crate) fn sink_for(scope: &str) -> Arc<FacadeSink> {
    /// By label: the recorder the handles were taken from, and the handles.
    type Sinks = HashMap<Arc<str>, (usize, Arc<FacadeSink>)>;
    static SINKS: Mutex<Option<Sinks>> = Mutex::new(None);
    let label = scope_label(scope);
    let recorder = recorder_in_force();
    let mut sinks = lock(&SINKS);
    let sinks = sinks.get_or_insert_with(HashMap::new);
    if let Some((seen, sink)) = sinks.get(&label)
        && *seen == recorder
    {
        return Arc::clone(sink);
    }
    let described = sinks.values().any(|(seen, _)| *seen == recorder);
    if !described {
        describe(names());
    }
    let sink = Arc::new(FacadeSink::new(Arc::clone(&label)));
    sinks.insert(label, (recorder, Arc::clone(&sink)));
    sink
}

/// Gives the recorder each instrument's unit and help text.
fn describe(names: &[&'static str; INSTRUMENTS.len()]) {
    for (instrument, &name) in INSTRUMENTS.iter().zip(names) {
        let description = instrument.description;
        let seconds = instrument.unit == "s";
        match (instrument.kind, seconds) {
            (Kind::Counter, _) => describe_counter!(name, Unit::Count, description),
            (Kind::Histogram, _) => describe_histogram!(name, Unit::Seconds, description),
            (Kind::Level | Kind::Gauge, true) => {
                describe_gauge!(name, Unit::Seconds, description)
            }
            (Kind::Level | Kind::Gauge, false) => describe_gauge!(name, description),
        }
    }
}

/// One scope's handles in the installed recorder.
pub(crate) struct FacadeSink {
    counts: [Counter; COUNTS.len()],
    levels: [Gauge; LEVELS.len()],
    ended: [Counter; OutcomeKind::ALL.len()],
    run: [Histogram; OutcomeKind::ALL.len()],
    permit_wait: Histogram,
    breaker_state: Gauge,
    scope_duration: Gauge,
}

impl FacadeSink {
    /// New handles labelled `scope = label`.
    fn new(label: Arc<str>) -> FacadeSink {
        let names = names();
        let scope = || ("scope", Arc::clone(&label));
        let by_outcome = |i: usize| {
            let outcome = OutcomeKind::ALL[i].as_str();
            [
                ("scope", Arc::clone(&label)),
                ("outcome", Arc::from(outcome)),
            ]
        };
        FacadeSink {
            counts: std::array::from_fn(|i| counter!(names[count_index(COUNTS[i])], &[scope()])),
            levels: std::array::from_fn(|i| gauge!(names[level_index(LEVELS[i])], &[scope()])),
            ended: std::array::from_fn(|i| counter!(names[ENDED], &by_outcome(i))),
            run: std::array::from_fn(|i| histogram!(names[RUN], &by_outcome(i))),
            permit_wait: histogram!(names[PERMIT_WAIT], &[scope()]),
            breaker_state: gauge!(names[BREAKER_STATE], &[scope()]),
            scope_duration: gauge!(names[SCOPE_DURATION], &[scope()]),
        }
    }
}

impl Sink for FacadeSink {
    fn add(&self, count: Count, n: u64) {
        self.counts[count as usize].increment(n);
    }

    fn step(&self, level: Level, delta: i64) {
        let gauge = &self.levels[level as usize];
        if delta >= 0 {
            gauge.increment(delta as f64);
        } else {
            gauge.decrement(delta.unsigned_abs() as f64);
        }
    }

    fn ended(&self, outcome: OutcomeKind, run: Duration) {
        let i = outcome_index(outcome);
        self.ended[i].increment(1);
        self.run[i].record(run.as_secs_f64());
    }

    fn permit_wait(&self, wait: Duration) {
        self.permit_wait.record(wait.as_secs_f64());
    }

    fn breaker_state(&self, value: u8) {
        self.breaker_state.set(f64::from(value));
    }

    fn scope_duration(&self, lifetime: Duration) {
        self.scope_duration.set(lifetime.as_secs_f64());
    }
}

impl ScopeBuilder {
    /// Records this scope's metrics through the [`metrics`](https://docs.rs/metrics) crate, into
    /// the recorder your application installed (for example `metrics-exporter-prometheus`), so
    /// they are exported beside your own. Off by default; not inherited by child scopes.
    ///
    /// The names are those of the process-wide registry (`goscope_tasks_spawned_total`,
    /// `goscope_task_run_seconds`, ...), labelled `scope` (and `outcome` where it applies); the
    /// guide's observability page lists them. Install the recorder before building the scope:
    /// a scope takes its handles when it is built.
    ///
    /// *Feature `metrics-facade`.*
    ///
    /// ```
    /// use go_go_scope::Scope;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let scope = Scope::builder().name("checkout").metrics_facade(true).build().unwrap();
    /// scope.spawn(async {}).await; // counted in the installed recorder, if any
    /// scope.close().await.unwrap();
    /// # }
    /// ```
    pub fn metrics_facade(mut self, enabled: bool) -> Self {
        self.features().metrics_facade = enabled;
        self
    }
}
