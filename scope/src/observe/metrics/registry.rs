//! The process-wide registry: every metrics-enabled scope, aggregated by scope name.
//!
//! A scope built with `metrics(true)` registers its counters here when it is built. While it
//! lives, the registry reads them at every scrape; when its state is dropped, its final numbers
//! are added to its name's retired totals. Counters of a name therefore only grow, however many
//! short-lived scopes share it (one per request, say), and memory stays bounded per name.
//!
//! Name scopes by role (`"checkout"`), not by instance (`"checkout-4711"`): every distinct name
//! is a label value and lives for the rest of the process.

use crate::util::sync::lock;
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, Weak};
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::DescriptorEncoder;

use super::ScopeMetrics;
use super::collector::{Counters, Totals};
use super::export::{Series, encode_families, encode_prometheus};

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
/// average and p95 over every completed task, tasks still running, and the scope lifetime (the
/// age of the oldest scope of that name still open, or else the lifetime of the last one that
/// closed).
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
}

impl fmt::Debug for MetricsRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MetricsRegistry")
            .field("names", &self.lock().by_name.len())
            .finish()
    }
}

#[derive(Default)]
struct Names {
    by_name: BTreeMap<String, NameEntry>,
    next_id: u64,
}

#[derive(Default)]
struct NameEntry {
    live: HashMap<u64, Weak<Counters>>,
    retired: Totals,
    last_lifetime: Option<Duration>,
}

static GLOBAL: OnceLock<MetricsRegistry> = OnceLock::new();

pub(crate) fn global() -> &'static MetricsRegistry {
    GLOBAL.get_or_init(|| MetricsRegistry {
        names: Mutex::new(Names::default()),
    })
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

    pub(crate) fn register(&self, counters: &Arc<Counters>) -> u64 {
        let mut names = self.lock();
        names.next_id += 1;
        let id = names.next_id;
        let weak = Arc::downgrade(counters);
        // Look up before inserting: most scopes reuse a name, and a lookup allocates nothing.
        match names.by_name.get_mut(&counters.name) {
            Some(entry) => {
                entry.live.insert(id, weak);
            }
            None => {
                let mut entry = NameEntry::default();
                entry.live.insert(id, weak);
                names.by_name.insert(counters.name.clone(), entry);
            }
        }
        id
    }

    /// Moves a scope's final numbers into its name's totals. Done under the registry's lock, so
    /// a concurrent scrape sees the scope either live or retired, never both.
    pub(crate) fn retire(&self, id: u64, counters: &Counters) {
        let mut names = self.lock();
        if let Some(entry) = names.by_name.get_mut(&counters.name)
            && entry.live.remove(&id).is_some()
        {
            counters.add_to(&mut entry.retired);
            if let Some(lifetime) = counters.lifetime.get() {
                entry.last_lifetime = Some(*lifetime);
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
        let names = self.lock();
        names
            .by_name
            .iter()
            .map(|(name, entry)| entry.snapshot(name))
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
        let names = self.lock();
        names.by_name.get(name).map(|entry| entry.snapshot(name))
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
    fn snapshot(&self, name: &str) -> ScopeMetrics {
        let mut totals = Totals::default();
        totals.merge(&self.retired);
        let mut oldest_open = None;
        for counters in self.live.values().filter_map(Weak::upgrade) {
            counters.add_to(&mut totals);
            if counters.lifetime.get().is_none() {
                let age = counters.created.elapsed();
                oldest_open = Some(oldest_open.map_or(age, |o: Duration| o.max(age)));
            }
        }
        let lifetime = oldest_open.or(self.last_lifetime).or_else(|| {
            self.live
                .values()
                .filter_map(Weak::upgrade)
                .filter_map(|c| c.lifetime.get().copied())
                .max()
        });
        totals.to_metrics(name, lifetime)
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
        let snapshots = self.registry.snapshot();
        let series: Vec<Series<'_>> = snapshots
            .iter()
            .map(|m| Series {
                scope_label: Some(&m.scope_name),
                metrics: m,
            })
            .collect();
        encode_families(&mut encoder, &series)?;
        crate::observe::introspect::encode_tasks_by_state(&mut encoder)
    }
}
