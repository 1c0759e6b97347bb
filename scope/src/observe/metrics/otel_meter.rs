//! Scope metrics through an OpenTelemetry meter: for scopes built with
//! [`otel_meter`](crate::ScopeBuilder::otel_meter), every instrument of `instruments.rs` is
//! recorded through the application's `MeterProvider`, so whatever exporter it configured (OTLP,
//! Prometheus, stdout) carries them.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use opentelemetry::KeyValue;
use opentelemetry::metrics::{Counter, Gauge, Histogram, Meter, UpDownCounter};

use super::instruments::{
    BREAKER_STATE, COUNTS, Count, ENDED, INSTRUMENTS, LEVELS, Level, PERMIT_WAIT, RUN,
    SCOPE_DURATION, SECONDS_BOUNDS, Sink, count_index, level_index, outcome_index, scope_label,
};
use crate::core::error::OutcomeKind;
use crate::core::scope::ScopeBuilder;

/// The scope instruments created in one OpenTelemetry [`Meter`]: what
/// [`ScopeBuilder::otel_meter`] takes. Create it once and clone it (a clone is one reference
/// count) for every scope: creating the instruments takes a lock in the SDK.
///
/// *Feature `otel`.*
///
/// ```
/// use go_go_scope::{Scope, ScopeMeter};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// // Your provider's meter: `provider.meter("my-app")`; here the global provider's.
/// let meter = ScopeMeter::new(&go_go_scope::opentelemetry::global::meter("my-app"));
/// let scope = Scope::builder().name("checkout").otel_meter(meter.clone()).build().unwrap();
/// scope.spawn(async {}).await;
/// scope.close().await.unwrap();
/// # }
/// ```
#[derive(Clone)]
pub struct ScopeMeter {
    instruments: Arc<OtelInstruments>,
}

impl fmt::Debug for ScopeMeter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScopeMeter").finish_non_exhaustive()
    }
}

struct OtelInstruments {
    counts: [Counter<u64>; COUNTS.len()],
    levels: [UpDownCounter<i64>; LEVELS.len()],
    ended: Counter<u64>,
    run: Histogram<f64>,
    permit_wait: Histogram<f64>,
    breaker_state: Gauge<u64>,
    scope_duration: Gauge<f64>,
}

impl ScopeMeter {
    /// The scope instruments in `meter`.
    pub fn new(meter: &Meter) -> ScopeMeter {
        let about = |i: usize| {
            let instrument = &INSTRUMENTS[i];
            (instrument.otel, instrument.unit, instrument.description)
        };
        let counter = |i: usize| {
            let (name, unit, description) = about(i);
            meter
                .u64_counter(name)
                .with_unit(unit)
                .with_description(description)
                .build()
        };
        let histogram = |i: usize| {
            let (name, unit, description) = about(i);
            meter
                .f64_histogram(name)
                .with_unit(unit)
                .with_description(description)
                .with_boundaries(SECONDS_BOUNDS.to_vec())
                .build()
        };
        let (name, unit, description) = about(BREAKER_STATE);
        let breaker_state = meter
            .u64_gauge(name)
            .with_unit(unit)
            .with_description(description)
            .build();
        let (name, unit, description) = about(SCOPE_DURATION);
        let scope_duration = meter
            .f64_gauge(name)
            .with_unit(unit)
            .with_description(description)
            .build();
        ScopeMeter {
            instruments: Arc::new(OtelInstruments {
                counts: std::array::from_fn(|i| counter(count_index(COUNTS[i]))),
                levels: std::array::from_fn(|i| {
                    let (name, unit, description) = about(level_index(LEVELS[i]));
                    meter
                        .i64_up_down_counter(name)
                        .with_unit(unit)
                        .with_description(description)
                        .build()
                }),
                ended: counter(ENDED),
                run: histogram(RUN),
                permit_wait: histogram(PERMIT_WAIT),
                breaker_state,
                scope_duration,
            }),
        }
    }

    /// The scope instruments in the global meter provider's meter `go-go-scope`, as the
    /// provider is now (set yours with `opentelemetry::global::set_meter_provider` first).
    pub fn global() -> ScopeMeter {
        ScopeMeter::new(&opentelemetry::global::meter("go-go-scope"))
    }
}

impl From<Meter> for ScopeMeter {
    fn from(meter: Meter) -> ScopeMeter {
        ScopeMeter::new(&meter)
    }
}

impl From<&Meter> for ScopeMeter {
    fn from(meter: &Meter) -> ScopeMeter {
        ScopeMeter::new(meter)
    }
}

/// One scope's attributes over the shared instruments.
pub(crate) struct OtelSink {
    instruments: Arc<OtelInstruments>,
    scope: [KeyValue; 1],
    by_outcome: [[KeyValue; 2]; OutcomeKind::ALL.len()],
}

impl OtelSink {
    pub(crate) fn new(meter: &ScopeMeter, scope: &str) -> OtelSink {
        let label = scope_label(scope);
        let scope = KeyValue::new("scope", Arc::clone(&label));
        OtelSink {
            instruments: Arc::clone(&meter.instruments),
            by_outcome: std::array::from_fn(|i| {
                [
                    scope.clone(),
                    KeyValue::new("outcome", OutcomeKind::ALL[i].as_str()),
                ]
            }),
            scope: [scope],
        }
    }
}

impl Sink for OtelSink {
    fn add(&self, count: Count, n: u64) {
        self.instruments.counts[count as usize].add(n, &self.scope);
    }

    fn step(&self, level: Level, delta: i64) {
        self.instruments.levels[level as usize].add(delta, &self.scope);
    }

    fn ended(&self, outcome: OutcomeKind, run: Duration) {
        let attributes = &self.by_outcome[outcome_index(outcome)];
        self.instruments.ended.add(1, attributes);
        self.instruments.run.record(run.as_secs_f64(), attributes);
    }

    fn permit_wait(&self, wait: Duration) {
        self.instruments
            .permit_wait
            .record(wait.as_secs_f64(), &self.scope);
    }

    fn breaker_state(&self, value: u8) {
        self.instruments
            .breaker_state
            .record(u64::from(value), &self.scope);
    }

    fn scope_duration(&self, lifetime: Duration) {
        self.instruments
            .scope_duration
            .record(lifetime.as_secs_f64(), &self.scope);
    }
}

impl ScopeBuilder {
    /// Records this scope's metrics through an OpenTelemetry meter, so the exporter of your
    /// `MeterProvider` carries them: a [`ScopeMeter`], or a `Meter` (which is turned into one
    /// here; prefer making the `ScopeMeter` once). Not inherited by child scopes.
    ///
    /// The instruments are the registry's under OpenTelemetry names (`goscope.tasks.ended`
    /// with the attribute `outcome`, `goscope.task.run` in seconds, ...), with the attribute
    /// `scope`; the guide's observability page maps one to the other.
    ///
    /// *Feature `otel`.*
    pub fn otel_meter(mut self, meter: impl Into<ScopeMeter>) -> Self {
        self.features().otel_meter = Some(meter.into());
        self
    }
}
