//! The profiler: where each task's time went — waiting for the circuit breaker and a
//! concurrency permit, each attempt, each retry delay — for scopes built with
//! [`profiler(true)`](crate::ScopeBuilder::profiler).
//!
//! Memory stays bounded: the statistics cover every task, the per-task list keeps the most
//! recent [`KEPT_PROFILES`] tasks.

use crate::core::observer::{EndedTask, Observer, Wants};
use crate::core::scope::{Scope, ScopeBuilder};
use crate::resilience::task_builder::TaskRun;
use crate::util::sync::lock;
use std::collections::VecDeque;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

/// How many per-task profiles a scope keeps (the statistics cover all tasks).
pub const KEPT_PROFILES: usize = 1_000;

/// Where one task's time went.
#[derive(Debug, Clone, PartialEq, Default)]
#[non_exhaustive]
pub struct TaskProfile {
    /// The task's name (`task-<n>` when it has none).
    pub name: String,
    /// The task's 1-based number in its scope.
    pub index: u64,
    /// Whether it ended with a value.
    pub succeeded: bool,
    /// From spawn to end.
    pub total: Duration,
    /// Time spent asking the circuit breaker (all attempts).
    pub circuit_breaker: Duration,
    /// Time spent waiting for a concurrency permit (all attempts).
    pub permit_wait: Duration,
    /// Each attempt's run time, in order.
    pub attempts: Vec<Duration>,
    /// Each retry delay actually waited, in order.
    pub retry_delays: Vec<Duration>,
    /// Retries made (`attempts.len() - 1` when every attempt ran).
    pub retry_attempts: u32,
}

impl TaskProfile {
    /// Time spent running attempts (the sum of [`attempts`](TaskProfile::attempts)).
    pub fn execution(&self) -> Duration {
        self.attempts.iter().sum()
    }

    /// Time spent in retry delays.
    pub fn retry_delay(&self) -> Duration {
        self.retry_delays.iter().sum()
    }
}

/// Aggregates over every task a scope profiled.
#[derive(Debug, Clone, PartialEq, Default)]
#[non_exhaustive]
pub struct ProfileStatistics {
    /// Tasks profiled.
    pub total_tasks: u64,
    /// Of which ended with a value.
    pub successful_tasks: u64,
    /// Of which ended with an error.
    pub failed_tasks: u64,
    /// Mean of [`TaskProfile::total`].
    pub avg_total: Duration,
    /// Mean of [`TaskProfile::execution`].
    pub avg_execution: Duration,
    /// Mean of [`TaskProfile::permit_wait`].
    pub avg_permit_wait: Duration,
    /// Sum of [`TaskProfile::retry_attempts`].
    pub total_retry_attempts: u64,
}

/// A scope's profile: recent tasks and statistics over all of them; see
/// [`Scope::profile_report`](crate::Scope::profile_report).
///
/// ```
/// use std::time::Duration;
/// use go_go_scope::{Retry, Scope};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// let scope = Scope::builder().profiler(true).build().unwrap();
/// scope
///     .task(|attempt| async move {
///         tokio::time::sleep(Duration::from_millis(10)).await;
///         if attempt == 1 { Err("first try fails") } else { Ok(()) }
///     })
///     .retry(Retry::fixed(1, Duration::from_millis(5)))
///     .spawn()
///     .await;
/// let report = scope.profile_report().unwrap();
/// let task = &report.tasks[0];
/// assert_eq!(task.attempts, [Duration::from_millis(10), Duration::from_millis(10)]);
/// assert_eq!(task.retry_delays, [Duration::from_millis(5)]);
/// assert_eq!(report.statistics.total_retry_attempts, 1);
/// scope.close().await.unwrap();
/// # }
/// ```
#[derive(Debug, Clone, PartialEq, Default)]
#[non_exhaustive]
pub struct ProfileReport {
    /// The most recent tasks, oldest first (at most [`KEPT_PROFILES`]).
    pub tasks: Vec<TaskProfile>,
    /// Over every task profiled.
    pub statistics: ProfileStatistics,
}

#[derive(Default)]
struct Totals {
    tasks: u64,
    successful: u64,
    total: Duration,
    execution: Duration,
    permit_wait: Duration,
    retries: u64,
}

/// The collecting side, owned by a scope.
#[derive(Default)]
pub(crate) struct Profiler {
    state: Mutex<(VecDeque<TaskProfile>, Totals)>,
}

impl Profiler {
    fn lock(&self) -> MutexGuard<'_, (VecDeque<TaskProfile>, Totals)> {
        // Single pushes and sums: a poisoned lock still holds consistent data.
        lock(&self.state)
    }

    pub(crate) fn record(&self, profile: TaskProfile) {
        let mut state = self.lock();
        let (recent, totals) = &mut *state;
        totals.tasks += 1;
        totals.successful += u64::from(profile.succeeded);
        totals.total = totals.total.saturating_add(profile.total);
        totals.execution = totals.execution.saturating_add(profile.execution());
        totals.permit_wait = totals.permit_wait.saturating_add(profile.permit_wait);
        totals.retries += u64::from(profile.retry_attempts);
        if recent.len() == KEPT_PROFILES {
            recent.pop_front();
        }
        recent.push_back(profile);
    }

    pub(crate) fn report(&self) -> ProfileReport {
        let state = self.lock();
        let (recent, totals) = &*state;
        let mean = |sum: Duration| {
            if totals.tasks == 0 {
                Duration::ZERO
            } else {
                let nanos = sum.as_nanos() / u128::from(totals.tasks);
                Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
            }
        };
        ProfileReport {
            tasks: recent.iter().cloned().collect(),
            statistics: ProfileStatistics {
                total_tasks: totals.tasks,
                successful_tasks: totals.successful,
                failed_tasks: totals.tasks - totals.successful,
                avg_total: mean(totals.total),
                avg_execution: mean(totals.execution),
                avg_permit_wait: mean(totals.permit_wait),
                total_retry_attempts: totals.retries,
            },
        }
    }

    pub(crate) fn clear(&self) {
        *self.lock() = (VecDeque::new(), Totals::default());
    }
}

impl Observer for Profiler {
    fn wants(&self) -> Wants {
        Wants {
            durations: true,
            spawn_time: true,
            ..Wants::default()
        }
    }

    fn task_ended(&self, task: &EndedTask<'_>) {
        self.record(profile_of(task));
    }
}

/// The profile of a task that has ended.
fn profile_of(task: &EndedTask<'_>) -> TaskProfile {
    let mut profile = TaskProfile {
        name: task.display_name().into_owned(),
        index: task.index,
        succeeded: task.error.is_none(),
        total: task.spawned.map_or(Duration::ZERO, |s| s.elapsed()),
        ..TaskProfile::default()
    };
    let run = task
        .details
        .and_then(|details| details.as_any().downcast_ref::<TaskRun>());
    match run {
        Some(run) => {
            let stages = run.take_stages();
            profile.circuit_breaker = stages.circuit_breaker;
            profile.permit_wait = run.permit_wait();
            profile.attempts = stages.attempts;
            profile.retry_delays = stages.retry_delays;
            profile.retry_attempts = run.retries();
        }
        None => {
            profile.permit_wait = match (task.spawned, task.started) {
                (Some(spawned), Some(started)) => started.saturating_duration_since(spawned),
                _ => Duration::ZERO,
            };
            if task.started.is_some() {
                profile.attempts = vec![task.duration];
            }
        }
    }
    profile
}

impl Scope {
    /// The profile of this scope's tasks, or `None` unless it was built with
    /// [`profiler(true)`](ScopeBuilder::profiler).
    pub fn profile_report(&self) -> Option<ProfileReport> {
        self.shared()
            .feature::<Profiler>()
            .map(|profiler| profiler.report())
    }

    /// Forgets the profiles recorded so far (no effect without a profiler).
    pub fn clear_profile(&self) {
        if let Some(profiler) = self.shared().feature::<Profiler>() {
            profiler.clear();
        }
    }
}

impl<K: crate::LocalKind> crate::LocalScope<'_, K> {
    /// The profile of this local scope's tasks so far, or `None` unless it was built with
    /// [`profiler(true)`](ScopeBuilder::profiler).
    pub fn profile_report(&self) -> Option<ProfileReport> {
        self.shared()
            .feature::<Profiler>()
            .map(|profiler| profiler.report())
    }
}

impl ScopeBuilder {
    /// Records where each task's time goes; read it with [`Scope::profile_report`].
    pub fn profiler(mut self, enabled: bool) -> Self {
        self.features().profiler = enabled;
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    // PROF-02, PROF-03, PROF-05
    #[test]
    fn statistics_are_means_over_all_tasks() {
        let p = Profiler::default();
        assert_eq!(p.report().statistics, ProfileStatistics::default());
        p.record(TaskProfile {
            name: "a".into(),
            index: 1,
            succeeded: true,
            total: ms(30),
            attempts: vec![ms(10), ms(10)],
            retry_attempts: 1,
            ..TaskProfile::default()
        });
        p.record(TaskProfile {
            name: "b".into(),
            index: 2,
            succeeded: false,
            total: ms(10),
            attempts: vec![ms(4)],
            ..TaskProfile::default()
        });
        let r = p.report();
        assert_eq!(r.tasks.len(), 2);
        let s = r.statistics;
        assert_eq!(
            (s.total_tasks, s.successful_tasks, s.failed_tasks),
            (2, 1, 1)
        );
        assert_eq!(s.total_retry_attempts, 1);
        assert_eq!(s.avg_total, ms(20));
        assert_eq!(s.avg_execution, ms(12));
        p.clear();
        assert!(p.report().tasks.is_empty());
    }

    #[test]
    fn keeps_a_bounded_window() {
        let p = Profiler::default();
        for index in 0..(KEPT_PROFILES as u64 + 10) {
            p.record(TaskProfile {
                index,
                ..TaskProfile::default()
            });
        }
        let r = p.report();
        assert_eq!(r.tasks.len(), KEPT_PROFILES);
        assert_eq!(r.tasks[0].index, 10);
        assert_eq!(r.statistics.total_tasks, KEPT_PROFILES as u64 + 10);
    }
}
