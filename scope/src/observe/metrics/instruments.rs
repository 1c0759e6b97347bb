//! The scope instruments that go to an application's own metrics pipeline: one list of what is
//! measured, and one observer that measures it for any destination.
//!
//! The destinations are a [`Sink`] each: the `metrics` crate's recorder (feature
//! `metrics-facade`, `facade.rs`) and an OpenTelemetry meter (feature `otel`, `otel_meter.rs`).
//! [`Recorder`] turns the core's events into the sink's calls, so both record the same numbers
//! under the same names (the Prometheus spelling and the OpenTelemetry spelling of
//! [`INSTRUMENTS`]).

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::core::error::{Error, OutcomeKind};
use crate::core::observer::{ClosedScope, EndedTask, Observer, SpawnedTask, Wants};
use crate::resilience::circuit_breaker::{CircuitBreaker, CircuitState};
use crate::resilience::task_builder::task_run;
use crate::util::sync::lock;

/// The most distinct scope names that get a `scope` label value of their own; later names are
/// all reported as [`OTHER_SCOPES`].
pub(crate) const MAX_SCOPE_LABELS: usize = 1_000;

/// The `scope` label of every scope whose name came after the first [`MAX_SCOPE_LABELS`].
pub(crate) const OTHER_SCOPES: &str = "__other__";

/// Upper bounds, in seconds, of the run-time and permit-wait histograms' buckets where the
/// destination takes advice (OpenTelemetry): 0.5 ms to 60 s.
#[cfg_attr(not(feature = "otel"), allow(dead_code))]
pub(crate) const SECONDS_BOUNDS: [f64; 16] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0,
];

/// The `scope` label value for a scope named `name`: its name while fewer than
/// [`MAX_SCOPE_LABELS`] names have been seen in the process, else [`OTHER_SCOPES`].
pub(crate) fn scope_label(name: &str) -> Arc<str> {
    static SEEN: Mutex<Labels> = Mutex::new(Labels::new(MAX_SCOPE_LABELS));
    lock(&SEEN).label(name)
}

/// The scope names given a label of their own so far.
struct Labels {
    seen: Option<HashSet<Arc<str>>>,
    cap: usize,
}

impl Labels {
    const fn new(cap: usize) -> Labels {
        Labels { seen: None, cap }
    }

    fn label(&mut self, name: &str) -> Arc<str> {
        let seen = self.seen.get_or_insert_with(HashSet::new);
        if let Some(label) = seen.get(name) {
            return Arc::clone(label);
        }
        if seen.len() >= self.cap {
            return Arc::from(OTHER_SCOPES);
        }
        let label: Arc<str> = Arc::from(name);
        seen.insert(Arc::clone(&label));
        label
    }
}

/// What kind of instrument a metric is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    /// Only goes up.
    Counter,
    /// Goes up and down by steps (OpenTelemetry: an up-down counter).
    Level,
    /// Set to a value.
    Gauge,
    /// A distribution of values.
    Histogram,
}

/// One instrument: its names in both spellings, its unit and its meaning.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Instrument {
    /// The Prometheus name after the `goscope_` prefix.
    #[cfg_attr(not(feature = "metrics-facade"), allow(dead_code))]
    pub(crate) prometheus: &'static str,
    /// The OpenTelemetry name.
    #[cfg_attr(not(feature = "otel"), allow(dead_code))]
    pub(crate) otel: &'static str,
    /// The OpenTelemetry unit (UCUM; `{task}` style annotations for counts).
    pub(crate) unit: &'static str,
    #[cfg_attr(not(feature = "metrics-facade"), allow(dead_code))]
    pub(crate) kind: Kind,
    pub(crate) description: &'static str,
}

/// The counters, by their place in [`INSTRUMENTS`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Count {
    Spawned = 0,
    Completed = 1,
    Failed = 2,
    Cancelled = 3,
    Retries = 4,
    BreakerRejections = 5,
    ResourcesRegistered = 6,
    ResourcesDisposed = 7,
    DisposalErrors = 8,
}

/// Every counter, in [`Count`] order.
pub(crate) const COUNTS: [Count; 9] = [
    Count::Spawned,
    Count::Completed,
    Count::Failed,
    Count::Cancelled,
    Count::Retries,
    Count::BreakerRejections,
    Count::ResourcesRegistered,
    Count::ResourcesDisposed,
    Count::DisposalErrors,
];

/// The up-and-down levels, by their place in [`INSTRUMENTS`] after the counters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Level {
    ScopesOpen = 0,
    TasksRunning = 1,
}

/// Every level, in [`Level`] order.
pub(crate) const LEVELS: [Level; 2] = [Level::ScopesOpen, Level::TasksRunning];

const fn counter(
    prometheus: &'static str,
    otel: &'static str,
    unit: &'static str,
    description: &'static str,
) -> Instrument {
    Instrument {
        prometheus,
        otel,
        unit,
        kind: Kind::Counter,
        description,
    }
}

/// Every instrument: the counters in [`Count`] order, the levels in [`Level`] order, then
/// `tasks_ended_total`, `task_run_seconds`, `permit_wait_seconds`, `breaker_state` and
/// `scope_duration_seconds` (see the constants below).
pub(crate) const INSTRUMENTS: [Instrument; 16] = [
    counter(
        "tasks_spawned_total",
        "goscope.tasks.spawned",
        "{task}",
        "Tasks spawned into the scope.",
    ),
    counter(
        "tasks_completed_total",
        "goscope.tasks.completed",
        "{task}",
        "Tasks that ended with a value.",
    ),
    counter(
        "tasks_failed_total",
        "goscope.tasks.failed",
        "{task}",
        "Tasks that failed: an error, a timeout, a panic or a refusal (not a cancellation).",
    ),
    counter(
        "tasks_cancelled_total",
        "goscope.tasks.cancelled",
        "{task}",
        "Tasks that were cancelled.",
    ),
    counter(
        "task_retries_total",
        "goscope.task.retries",
        "{retry}",
        "Attempts of tasks beyond their first.",
    ),
    counter(
        "breaker_rejections_total",
        "goscope.breaker.rejections",
        "{task}",
        "Tasks refused because the scope's circuit breaker was open.",
    ),
    counter(
        "resources_registered_total",
        "goscope.resources.registered",
        "{resource}",
        "Resources registered for disposal.",
    ),
    counter(
        "resources_disposed_total",
        "goscope.resources.disposed",
        "{resource}",
        "Resources whose disposer has run.",
    ),
    counter(
        "resource_disposal_errors_total",
        "goscope.resource.disposal_errors",
        "{resource}",
        "Disposers that failed or panicked.",
    ),
    Instrument {
        prometheus: "scopes_open",
        otel: "goscope.scopes.open",
        unit: "{scope}",
        kind: Kind::Level,
        description: "Scopes built and not yet closed.",
    },
    Instrument {
        prometheus: "tasks_running",
        otel: "goscope.tasks.running",
        unit: "{task}",
        kind: Kind::Level,
        description: "Tasks spawned and not yet ended.",
    },
    Instrument {
        prometheus: "tasks_ended_total",
        otel: "goscope.tasks.ended",
        unit: "{task}",
        kind: Kind::Counter,
        description: "Tasks that ended, by outcome.",
    },
    Instrument {
        prometheus: "task_run_seconds",
        otel: "goscope.task.run",
        unit: "s",
        kind: Kind::Histogram,
        description: "How long each ended task ran, from its body's start to its end, by outcome.",
    },
    Instrument {
        prometheus: "permit_wait_seconds",
        otel: "goscope.permit.wait",
        unit: "s",
        kind: Kind::Histogram,
        description: "How long a task waited for a concurrency permit (scopes with a limit).",
    },
    Instrument {
        prometheus: "breaker_state",
        otel: "goscope.breaker.state",
        unit: "1",
        kind: Kind::Gauge,
        description: "The scope's circuit breaker: 0 closed, 1 half-open, 2 open.",
    },
    Instrument {
        prometheus: "scope_duration_seconds",
        otel: "goscope.scope.duration",
        unit: "s",
        kind: Kind::Gauge,
        description: "How long the last closed scope of this name lived, from build to the end of close.",
    },
];

/// [`INSTRUMENTS`]' place of `tasks_ended_total`.
pub(crate) const ENDED: usize = 11;
/// [`INSTRUMENTS`]' place of `task_run_seconds`.
pub(crate) const RUN: usize = 12;
/// [`INSTRUMENTS`]' place of `permit_wait_seconds`.
pub(crate) const PERMIT_WAIT: usize = 13;
/// [`INSTRUMENTS`]' place of `breaker_state`.
pub(crate) const BREAKER_STATE: usize = 14;
/// [`INSTRUMENTS`]' place of `scope_duration_seconds`.
pub(crate) const SCOPE_DURATION: usize = 15;

/// The place of counter `count` in [`INSTRUMENTS`].
pub(crate) const fn count_index(count: Count) -> usize {
    count as usize
}

/// The place of level `level` in [`INSTRUMENTS`].
pub(crate) const fn level_index(level: Level) -> usize {
    COUNTS.len() + level as usize
}

/// The place of `outcome` in [`OutcomeKind::ALL`].
pub(crate) fn outcome_index(outcome: OutcomeKind) -> usize {
    OutcomeKind::ALL
        .iter()
        .position(|k| *k == outcome)
        .unwrap_or(1)
}

/// The value of the `breaker_state` gauge.
pub(crate) fn breaker_value(state: CircuitState) -> u8 {
    match state {
        CircuitState::Closed => 0,
        CircuitState::HalfOpen => 1,
        CircuitState::Open => 2,
    }
}

/// One scope's instruments in one destination, already labelled with the scope.
pub(crate) trait Sink: Send + Sync + 'static {
    fn add(&self, count: Count, n: u64);
    fn step(&self, level: Level, delta: i64);
    fn ended(&self, outcome: OutcomeKind, run: Duration);
    fn permit_wait(&self, wait: Duration);
    fn breaker_state(&self, value: u8);
    fn scope_duration(&self, lifetime: Duration);
}

impl<S: Sink> Sink for Arc<S> {
    fn add(&self, count: Count, n: u64) {
        (**self).add(count, n);
    }

    fn step(&self, level: Level, delta: i64) {
        (**self).step(level, delta);
    }

    fn ended(&self, outcome: OutcomeKind, run: Duration) {
        (**self).ended(outcome, run);
    }

    fn permit_wait(&self, wait: Duration) {
        (**self).permit_wait(wait);
    }

    fn breaker_state(&self, value: u8) {
        (**self).breaker_state(value);
    }

    fn scope_duration(&self, lifetime: Duration) {
        (**self).scope_duration(lifetime);
    }
}

/// The observer that records a scope's events into a [`Sink`].
pub(crate) struct Recorder<S: Sink> {
    sink: S,
    /// The scope has a concurrency limit: permit waits are recorded.
    limited: bool,
    breaker: Option<Arc<CircuitBreaker>>,
    /// The scope has been counted closed (by `scope_closed`, else on drop).
    closed: AtomicBool,
}

impl<S: Sink> Recorder<S> {
    /// Starts recording a scope that was just built (counted open).
    pub(crate) fn new(sink: S, limited: bool, breaker: Option<Arc<CircuitBreaker>>) -> Self {
        sink.step(Level::ScopesOpen, 1);
        if let Some(breaker) = &breaker {
            sink.breaker_state(breaker_value(breaker.state()));
        }
        Recorder {
            sink,
            limited,
            breaker,
            closed: AtomicBool::new(false),
        }
    }

    fn count_closed(&self) {
        if !self.closed.swap(true, Ordering::Relaxed) {
            self.sink.step(Level::ScopesOpen, -1);
        }
    }
}

impl<S: Sink> Drop for Recorder<S> {
    fn drop(&mut self) {
        self.count_closed();
    }
}

impl<S: Sink> Observer for Recorder<S> {
    fn wants(&self) -> Wants {
        Wants {
            durations: true,
            spawn_time: self.limited,
            ..Wants::default()
        }
    }

    fn task_spawned(&self, _task: &SpawnedTask<'_>) -> Result<(), Error> {
        self.sink.add(Count::Spawned, 1);
        self.sink.step(Level::TasksRunning, 1);
        Ok(())
    }

    fn task_ended(&self, task: &EndedTask<'_>) {
        let outcome = OutcomeKind::of(task.error);
        self.sink.step(Level::TasksRunning, -1);
        match outcome {
            OutcomeKind::Ok => self.sink.add(Count::Completed, 1),
            OutcomeKind::Cancelled => self.sink.add(Count::Cancelled, 1),
            _ => self.sink.add(Count::Failed, 1),
        }
        self.sink.ended(outcome, task.duration);
        if matches!(task.error, Some(Error::CircuitOpen)) {
            self.sink.add(Count::BreakerRejections, 1);
        }
        let run = task_run(task.details);
        if let Some(retries) = run.as_ref().map(|run| run.retries()).filter(|n| *n > 0) {
            self.sink.add(Count::Retries, u64::from(retries));
        }
        if self.limited {
            // A task of the task builder takes a permit per attempt and sums its waits; any
            // other task waits once, between its spawn and its body's start.
            let wait = match (&run, task.spawned, task.started) {
                (Some(run), _, _) => Some(run.permit_wait()),
                (None, Some(spawned), Some(started)) => {
                    Some(started.saturating_duration_since(spawned))
                }
                _ => None,
            };
            if let Some(wait) = wait {
                self.sink.permit_wait(wait);
            }
        }
        if let Some(breaker) = &self.breaker {
            self.sink.breaker_state(breaker_value(breaker.state()));
        }
    }

    fn resource_registered(&self) {
        self.sink.add(Count::ResourcesRegistered, 1);
    }

    fn resource_disposed(&self, _position: usize, error: Option<&Error>) {
        self.sink.add(Count::ResourcesDisposed, 1);
        if error.is_some() {
            self.sink.add(Count::DisposalErrors, 1);
        }
    }

    fn scope_closed(&self, scope: &ClosedScope<'_>) {
        if let Some(lifetime) = scope.lifetime {
            self.sink.scope_duration(lifetime);
        }
        self.count_closed();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_list_matches_its_indices() {
        for count in COUNTS {
            assert_eq!(INSTRUMENTS[count_index(count)].kind, Kind::Counter);
        }
        for level in LEVELS {
            assert_eq!(INSTRUMENTS[level_index(level)].kind, Kind::Level);
        }
        assert_eq!(INSTRUMENTS[ENDED].prometheus, "tasks_ended_total");
        assert_eq!(INSTRUMENTS[RUN].prometheus, "task_run_seconds");
        assert_eq!(INSTRUMENTS[PERMIT_WAIT].prometheus, "permit_wait_seconds");
        assert_eq!(INSTRUMENTS[BREAKER_STATE].prometheus, "breaker_state");
        assert_eq!(
            INSTRUMENTS[SCOPE_DURATION].prometheus,
            "scope_duration_seconds"
        );
        for (i, instrument) in INSTRUMENTS.iter().enumerate() {
            // Counters end in `_total` in Prometheus and never in OpenTelemetry.
            assert_eq!(
                instrument.prometheus.ends_with("_total"),
                instrument.kind == Kind::Counter,
                "{i}"
            );
            assert!(!instrument.otel.ends_with("total"), "{i}");
            assert!(instrument.otel.starts_with("goscope."), "{i}");
        }
    }

    #[test]
    fn outcome_indices_follow_all() {
        for (i, kind) in OutcomeKind::ALL.into_iter().enumerate() {
            assert_eq!(outcome_index(kind), i);
        }
    }

    #[test]
    fn scope_labels_are_capped() {
        let mut labels = Labels::new(3);
        let first = labels.label("first");
        assert_eq!(&*first, "first");
        assert!(Arc::ptr_eq(&first, &labels.label("first")));
        assert_eq!(&*labels.label("second"), "second");
        assert_eq!(&*labels.label("third"), "third");
        assert_eq!(&*labels.label("fourth"), OTHER_SCOPES);
        // Names seen before the cap keep their own label.
        assert_eq!(&*labels.label("second"), "second");
    }
}
