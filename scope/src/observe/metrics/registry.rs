//! The process-wide registry: every metrics-enabled scope, aggregated by scope name.
//!
//! A scope built with `metrics(true)` registers its counters here when it is built. While it
//! lives, the registry reads them at every scrape; when its state is dropped, its final numbers
//! are added to its name's retired totals. Counters of a name therefore only grow, however many
//! short-lived scopes share it (one per request, say), and memory stays bounded per name.
//!
//! Name scopes by role (`"checkout"`), not by instance (`"checkout-4711"`): every distinct name
//! is a label value and lives for the rest of the process. The registry holds at most
//! [`DEFAULT_MAX_SCOPE_NAMES`] names unless told otherwise; scopes with further names are
//! counted under [`OVERFLOW_SCOPE`].

use crate::core::error::Error;
use crate::resilience::circuit_breaker::{CircuitBreaker, CircuitState};
use crate::util::sync::lock;
use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, Weak};
use std::time::Duration;
use tokio::time::Instant;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::DescriptorEncoder;

use super::ScopeMetrics;
use super::collector::{Counters, Totals};
use super::export::{Series, encode_families, encode_prometheus};
use super::window::Window;

/// How many distinct scope names the registry holds unless told otherwise
/// ([`MetricsRegistry::set_max_scope_names`]).
///
/// *Feature `metrics`.*
pub const DEFAULT_MAX_SCOPE_NAMES: usize = 1_000;

/// The `scope` label of the scopes whose names came after the registry was full.
///
/// *Feature `metrics`.*
pub const OVERFLOW_SCOPE: &str = "__other__";

/// The length of the sliding window behind the average and p95 gauges unless told otherwise
/// ([`MetricsRegistry::set_window`]): five minutes.
///
/// *Feature `metrics`.*
pub const DEFAULT_WINDOW: Duration = Duration::from_secs(300);

/// The `Content-Type` to serve [`encode`]'s output with: Prometheus text format 0.0.4.
///
/// *Feature `metrics`.*
///
/// ```
/// assert!(go_go_scope::metrics::CONTENT_TYPE.starts_with("text/plain; version=0.0.4"));
/// ```
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// The process-wide registry of scope metrics; get it with [`registry()`].
///
/// It reports, for each scope name, the sum over every metrics-enabled scope of that name that
/// ever existed in the process, with the label `scope="<name>"`. The gauges are per name too:
/// average and p95 run time over a sliding window ([`DEFAULT_WINDOW`], see
/// [`set_window`](Self::set_window)), tasks still running, scopes open, the breaker state, and
/// the scope lifetime (the age of the oldest scope of that name still open, or else the
/// lifetime of the last one that closed).
///
/// Control characters in a scope name (a CR, a tab, a NUL) are written as escapes (`\r`,
/// `\t`, `\u{0}`), so a label value never breaks an exposition. The registry holds at most
/// [`DEFAULT_MAX_SCOPE_NAMES`] names (see [`set_max_scope_names`](Self::set_max_scope_names));
/// scopes with further names are counted under `scope="__other__"` ([`OVERFLOW_SCOPE`]) and a
/// warning is logged once.
///
/// *Feature `metrics`.*
///
/// ```
/// use go_go_scope::Scope;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// for _ in 0..3 {
///     let scope = Scope::builder().name("doc-registry").metrics(true).build().unwrap();
///     scope.spawn(async {}).await;
///     scope.close().await.unwrap();
/// }
/// let text = go_go_scope::metrics::encode();
/// assert!(text.contains("goscope_tasks_spawned_total{scope=\"doc-registry\"} 3\n"));
/// let m = go_go_scope::metrics::registry().snapshot_of("doc-registry").unwrap();
/// assert_eq!(m.tasks_completed, 3);
/// # }
/// ```
pub struct MetricsRegistry {
    names: Mutex<Names>,
    max_names: AtomicUsize,
    window_nanos: AtomicU64,
}

impl fmt::Debug for MetricsRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MetricsRegistry")
            .field("names", &self.lock().by_name.len())
            .field("max_scope_names", &self.max_scope_names())
            .field("window", &self.window())
            .finish()
    }
}

#[derive(Default)]
struct Names {
    by_name: BTreeMap<String, NameEntry>,
    next_id: u64,
    /// Whether the overflow warning was logged.
    warned: bool,
}

#[derive(Default)]
struct NameEntry {
    live: HashMap<u64, Weak<Counters>>,
    retired: Totals,
    last_lifetime: Option<Duration>,
    window: Arc<Mutex<Window>>,
    /// The breaker of the last scope of the name that went away, read while no scope of the
    /// name is live (a breaker shared by short-lived scopes outlives each of them).
    last_breaker: Option<Arc<CircuitBreaker>>,
}

static GLOBAL: OnceLock<MetricsRegistry> = OnceLock::new();

pub(crate) fn global() -> &'static MetricsRegistry {
    GLOBAL.get_or_init(|| MetricsRegistry {
        names: Mutex::new(Names::default()),
        max_names: AtomicUsize::new(DEFAULT_MAX_SCOPE_NAMES),
        window_nanos: AtomicU64::new(DEFAULT_WINDOW.as_nanos() as u64),
    })
}

/// `name` with its control characters written as escapes (`\r`, `\t`, `\u{0}`).
pub(crate) fn escape_name(name: &str) -> Cow<'_, str> {
    if !name.chars().any(char::is_control) {
        return Cow::Borrowed(name);
    }
    let mut escaped = String::with_capacity(name.len() + 8);
    for c in name.chars() {
        match c {
            '\n' => escaped.push_str("\\n"),
            '\r' => escaped.push_str("\\r"),
            '\t' => escaped.push_str("\\t"),
            c if c.is_control() => escaped.push_str(&format!("\\u{{{:x}}}", u32::from(c))),
            c => escaped.push(c),
        }
    }
    Cow::Owned(escaped)
}

/// The process-wide registry of scope metrics.
///
/// *Feature `metrics`.*
///
/// ```
/// let registry = go_go_scope::metrics::registry();
/// assert!(std::ptr::eq(registry, go_go_scope::metrics::registry()));
/// ```
pub fn registry() -> &'static MetricsRegistry {
    global()
}

/// The registry as Prometheus text (format 0.0.4, prefix `goscope`), ready to serve at
/// `/metrics` with [`CONTENT_TYPE`]. Shorthand for `registry().encode()`.
///
/// *Feature `metrics`.*
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let scope = go_go_scope::Scope::builder().name("doc-encode").metrics(true).build().unwrap();
/// scope.try_spawn(async { Err::<(), _>("no") }).await;
/// let text = go_go_scope::metrics::encode();
/// assert!(text.contains("goscope_tasks_failed_total{scope=\"doc-encode\"} 1\n"));
/// scope.close().await.unwrap();
/// # }
/// ```
pub fn encode() -> String {
    global().encode()
}

impl MetricsRegistry {
    fn lock(&self) -> MutexGuard<'_, Names> {
        // Every critical section leaves the maps consistent; a poisoned lock is still usable.
        lock(&self.names)
    }

    /// Files a new scope's counters under its name (escaped), or under [`OVERFLOW_SCOPE`] when
    /// the registry already holds as many names as it may; `build` makes the counters from
    /// the name they are filed under and the name's sliding window.
    pub(crate) fn register(
        &self,
        name: &str,
        build: impl FnOnce(String, Arc<Mutex<Window>>) -> Arc<Counters>,
    ) -> (u64, Arc<Counters>) {
        let mut names = self.lock();
        names.next_id += 1;
        let id = names.next_id;
        let escaped = escape_name(name);
        let mut key: &str = &escaped;
        // Look up before inserting: most scopes reuse a name, and a lookup allocates nothing.
        if !names.by_name.contains_key(key) {
            let max = self.max_names.load(Relaxed);
            let held =
                names.by_name.len() - usize::from(names.by_name.contains_key(OVERFLOW_SCOPE));
            if held >= max {
                if !names.warned {
                    names.warned = true;
                    tracing::warn!(
                        scope = key,
                        max_scope_names = max,
                        "the metrics registry holds as many scope names as it may; scopes with \
                         further names are counted under scope=\"__other__\" (name scopes by \
                         role, not by request)"
                    );
                }
                key = OVERFLOW_SCOPE;
            }
        }
        let entry = match names.by_name.get_mut(key) {
            Some(entry) => entry,
            None => names.by_name.entry(key.to_owned()).or_default(),
        };
        let counters = build(key.to_owned(), Arc::clone(&entry.window));
        entry.live.insert(id, Arc::downgrade(&counters));
        (id, counters)
    }

    /// The most distinct scope names the registry holds (default
    /// [`DEFAULT_MAX_SCOPE_NAMES`]); scopes with further names are counted under
    /// [`OVERFLOW_SCOPE`]. Names already held stay; lowering the cap only affects new names.
    ///
    /// ```
    /// use go_go_scope::metrics::{DEFAULT_MAX_SCOPE_NAMES, registry};
    ///
    /// assert_eq!(registry().max_scope_names(), DEFAULT_MAX_SCOPE_NAMES);
    /// registry().set_max_scope_names(5_000);
    /// assert_eq!(registry().max_scope_names(), 5_000);
    /// ```
    pub fn set_max_scope_names(&self, max: usize) {
        self.max_names.store(max, Relaxed);
    }

    /// The most distinct scope names the registry holds.
    pub fn max_scope_names(&self) -> usize {
        self.max_names.load(Relaxed)
    }

    /// Sets the length of the sliding window behind the average and p95 gauges (default
    /// [`DEFAULT_WINDOW`]). Set it at start-up: samples already counted were filed in slots of
    /// the old length. A zero window is refused with [`Error::InvalidOption`].
    ///
    /// ```
    /// use std::time::Duration;
    /// use go_go_scope::metrics::registry;
    ///
    /// registry().set_window(Duration::from_secs(300)).unwrap();
    /// assert_eq!(registry().window(), Duration::from_secs(300));
    /// assert!(registry().set_window(Duration::ZERO).is_err());
    /// ```
    ///
    /// # Errors
    /// [`Error::InvalidOption`] for a window under 10 ms; the window is then unchanged.
    pub fn set_window(&self, window: Duration) -> Result<(), Error> {
        if window < Duration::from_millis(10) {
            return Err(Error::invalid(
                "metrics window",
                "the window must be at least 10 ms",
            ));
        }
        let nanos = u64::try_from(window.as_nanos()).unwrap_or(u64::MAX);
        self.window_nanos.store(nanos, Relaxed);
        Ok(())
    }

    /// The length of the sliding window behind the average and p95 gauges.
    pub fn window(&self) -> Duration {
        Duration::from_nanos(self.window_nanos.load(Relaxed))
    }

    /// Moves a scope's final numbers into its name's totals. Done under the registry's lock, so
    /// a concurrent scrape sees the scope either live or retired, never both.
    pub(crate) fn retire(&self, id: u64, counters: &Counters) {
        let mut names = self.lock();
        if let Some(entry) = names.by_name.get_mut(&counters.key)
            && entry.live.remove(&id).is_some()
        {
            counters.add_to(&mut entry.retired);
            if let Some(lifetime) = counters.lifetime.get() {
                entry.last_lifetime = Some(*lifetime);
            }
            if let Some(breaker) = counters.breaker() {
                entry.last_breaker = Some(Arc::clone(breaker));
            }
        }
    }

    /// One aggregated snapshot per scope name, sorted by name.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let a = go_go_scope::Scope::builder().name("doc-snap").metrics(true).build().unwrap();
    /// let b = go_go_scope::Scope::builder().name("doc-snap").metrics(true).build().unwrap();
    /// a.spawn(async {}).await;
    /// b.spawn(async {}).await;
    /// let all = go_go_scope::metrics::registry().snapshot();
    /// let mine = all.iter().find(|m| m.scope_name == "doc-snap").unwrap();
    /// assert_eq!(mine.tasks_spawned, 2);
    /// a.close().await.unwrap();
    /// b.close().await.unwrap();
    /// # }
    /// ```
    pub fn snapshot(&self) -> Vec<ScopeMetrics> {
        self.snapshots().into_iter().map(|(m, _)| m).collect()
    }

    /// Every name's snapshot, with the count of its scopes still open.
    fn snapshots(&self) -> Vec<(ScopeMetrics, u64)> {
        let now = Instant::now();
        let window = self.window();
        let names = self.lock();
        names
            .by_name
            .iter()
            .map(|(name, entry)| entry.snapshot(name, now, window))
            .collect()
    }

    /// The aggregated snapshot of the scopes named `name`, if any was ever registered.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let registry = go_go_scope::metrics::registry();
    /// assert!(registry.snapshot_of("doc-never-built").is_none());
    /// let scope = go_go_scope::Scope::builder().name("doc-snapshot-of").metrics(true).build().unwrap();
    /// let running = scope.spawn(std::future::pending::<()>());
    /// let m = registry.snapshot_of("doc-snapshot-of").unwrap();
    /// assert_eq!((m.tasks_spawned, m.tasks_completed), (1, 0));
    /// assert!(m.scope_duration.is_some()); // while open: how long it has been running
    /// running.cancel();
    /// scope.close().await.unwrap();
    /// # }
    /// ```
    pub fn snapshot_of(&self, name: &str) -> Option<ScopeMetrics> {
        let now = Instant::now();
        let window = self.window();
        let names = self.lock();
        let name = escape_name(name);
        names
            .by_name
            .get(&*name)
            .map(|entry| entry.snapshot(&name, now, window).0)
    }

    /// The registry as Prometheus text (format 0.0.4) with the prefix `goscope`.
    pub fn encode(&'static self) -> String {
        self.encode_with_prefix("goscope")
    }

    /// The registry as Prometheus text (format 0.0.4) with names prefixed by `prefix`
    /// (characters invalid in metric names become `_`; empty means no prefix).
    ///
    /// ```
    /// let text = go_go_scope::metrics::registry().encode_with_prefix("myapp");
    /// assert!(text.lines().all(|l| l.is_empty() || l.starts_with("# ") || l.starts_with("myapp_")));
    /// ```
    pub fn encode_with_prefix(&'static self, prefix: &str) -> String {
        encode_prometheus(prefix, ScopesCollector { registry: self })
    }

    /// A `prometheus-client` collector over this registry, to serve scope metrics from an
    /// application's own `prometheus_client::registry::Registry` beside its other metrics.
    /// Names carry no prefix of their own: register it under a prefixed sub-registry.
    ///
    /// ```
    /// use prometheus_client::registry::Registry;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let scope = go_go_scope::Scope::builder().name("doc-collector").metrics(true).build().unwrap();
    /// scope.spawn(async {}).await;
    ///
    /// let mut app = Registry::default();
    /// app.sub_registry_with_prefix("goscope")
    ///     .register_collector(Box::new(go_go_scope::metrics::registry().collector()));
    /// let mut text = String::new();
    /// prometheus_client::encoding::text::encode(&mut text, &app).unwrap();
    /// assert!(text.contains("goscope_tasks_spawned_total{scope=\"doc-collector\"} 1"));
    /// scope.close().await.unwrap();
    /// # }
    /// ```
    pub fn collector(&'static self) -> ScopesCollector {
        ScopesCollector { registry: self }
    }
}

impl NameEntry {
    fn snapshot(&self, name: &str, now: Instant, window: Duration) -> (ScopeMetrics, u64) {
        let mut totals = Totals::default();
        totals.merge(&self.retired);
        let mut oldest_open = None;
        let mut open = 0;
        let mut breaker: Option<CircuitState> = None;
        let mut closed_lifetime = None;
        for counters in self.live.values().filter_map(Weak::upgrade) {
            counters.add_to(&mut totals);
            match counters.lifetime.get() {
                None => {
                    open += 1;
                    let age = counters.created.elapsed();
                    oldest_open = Some(oldest_open.map_or(age, |o: Duration| o.max(age)));
                }
                Some(&lifetime) => {
                    closed_lifetime =
                        Some(closed_lifetime.map_or(lifetime, |l: Duration| l.max(lifetime)));
                }
            }
            if let Some(state) = counters.breaker_state() {
                breaker = Some(match breaker {
                    Some(seen) if breaker_level(seen) >= breaker_level(state) => seen,
                    _ => state,
                });
            }
        }
        if breaker.is_none() {
            breaker = self.last_breaker.as_ref().map(|b| b.state());
        }
        let lifetime = oldest_open.or(self.last_lifetime).or(closed_lifetime);
        let mut m = totals.to_metrics(name, lifetime);
        let stats = lock(&self.window).stats(now, window);
        m.avg_task_duration = stats.average;
        m.p95_task_duration = stats.p95;
        m.breaker_state = breaker;
        (m, open)
    }
}

/// The breaker-state gauge's value: 0 closed, 1 half-open, 2 open.
pub(crate) fn breaker_level(state: CircuitState) -> u8 {
    match state {
        CircuitState::Closed => 0,
        CircuitState::HalfOpen => 1,
        CircuitState::Open => 2,
    }
}

/// The process-wide registry as a `prometheus-client` [`Collector`]; see
/// [`MetricsRegistry::collector`].
///
/// *Feature `metrics`.*
#[derive(Clone, Copy)]
pub struct ScopesCollector {
    registry: &'static MetricsRegistry,
}

impl fmt::Debug for ScopesCollector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScopesCollector").finish_non_exhaustive()
    }
}

impl Collector for ScopesCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), fmt::Error> {
        let snapshots = self.registry.snapshots();
        let series: Vec<Series<'_>> = snapshots
            .iter()
            .map(|(m, open)| Series {
                scope_label: Some(&m.scope_name),
                metrics: m,
                scopes_open: Some(*open),
            })
            .collect();
        encode_families(&mut encoder, &series)?;
        let held: std::collections::BTreeSet<String> = self
            .registry
            .lock()
            .by_name
            .keys()
            .filter(|name| *name != OVERFLOW_SCOPE)
            .cloned()
            .collect();
        crate::observe::introspect::encode_tasks_by_state(
            &mut encoder,
            &held,
            self.registry.max_scope_names(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::observe::metrics::collector::MetricsCollector;

    fn registry_of(max: usize) -> MetricsRegistry {
        MetricsRegistry {
            names: Mutex::new(Names::default()),
            max_names: AtomicUsize::new(max),
            window_nanos: AtomicU64::new(DEFAULT_WINDOW.as_nanos() as u64),
        }
    }

    #[tokio::test]
    async fn the_tasks_by_state_gauge_keeps_to_the_name_cap() {
        let registry: &'static MetricsRegistry = Box::leak(Box::new(registry_of(1)));
        registry.register("gauge-cap-held", |key, window| {
            Arc::new(MetricsCollector::counters_for_test(key, window))
        });
        let held = crate::Scope::builder()
            .name("gauge-cap-held")
            .build()
            .unwrap();
        let other = crate::Scope::builder()
            .name("gauge-cap-past-the-cap")
            .build()
            .unwrap();
        let _a = held.spawn(std::future::pending::<()>());
        let _b = other.spawn(std::future::pending::<()>());
        let text = registry.encode();
        assert!(
            text.contains("goscope_tasks_by_state{scope=\"gauge-cap-held\",state=\"running\"} 1"),
            "{text}"
        );
        assert!(!text.contains("gauge-cap-past-the-cap"), "{text}");
        assert!(
            text.contains("goscope_tasks_by_state{scope=\"__other__\",state=\"running\"}"),
            "{text}"
        );
        held.close().await.unwrap();
        other.close().await.unwrap();
    }

    #[test]
    fn names_past_the_cap_fold_into_one_overflow_series() {
        let registry = registry_of(3);
        let mut kept = Vec::new();
        for i in 0..10 {
            kept.push(registry.register(&format!("request-{i}"), |key, window| {
                Arc::new(MetricsCollector::counters_for_test(key, window))
            }));
        }
        // A name already held keeps its own series.
        kept.push(registry.register("request-1", |key, window| {
            Arc::new(MetricsCollector::counters_for_test(key, window))
        }));
        let names = registry.lock();
        let held: Vec<&String> = names.by_name.keys().collect();
        assert_eq!(held, ["__other__", "request-0", "request-1", "request-2"]);
        assert_eq!(names.by_name[OVERFLOW_SCOPE].live.len(), 7);
        assert_eq!(names.by_name["request-1"].live.len(), 2);
        assert!(names.warned);
    }

    #[test]
    fn control_characters_are_escaped() {
        assert_eq!(escape_name("plain"), Cow::Borrowed("plain"));
        assert_eq!(escape_name("a\r\nb\tc\0"), "a\\r\\nb\\tc\\u{0}");
        assert_eq!(escape_name("é\u{7f}"), "é\\u{7f}");
    }

    #[test]
    fn a_window_shorter_than_ten_milliseconds_is_refused() {
        let registry = registry_of(1);
        assert!(matches!(
            registry.set_window(Duration::from_millis(1)),
            Err(Error::InvalidOption { .. })
        ));
        registry.set_window(Duration::from_secs(60)).unwrap();
        assert_eq!(registry.window(), Duration::from_secs(60));
    }
}
