//! Property tests: the circuit breaker against a reference model, and retry counting.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use go_go_scope::{CircuitBreaker, CircuitState, Error, Retry, Scope};
use proptest::prelude::*;

fn paused_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("runtime")
}

#[derive(Debug, Clone)]
enum Op {
    Call { succeeds: bool },
    Advance { ms: u64 },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => any::<bool>().prop_map(|succeeds| Op::Call { succeeds }),
        1 => (0_u64..120).prop_map(|ms| Op::Advance { ms }),
    ]
}

/// The documented behaviour, written as plainly as possible.
#[derive(Debug)]
struct Model {
    threshold: u32,
    reset_ms: u64,
    now_ms: u64,
    state: CircuitState,
    opened_at: u64,
    failures: u32,
    rejections: u64,
}

impl Model {
    fn visible_state(&self) -> CircuitState {
        match self.state {
            CircuitState::Open if self.now_ms - self.opened_at >= self.reset_ms => {
                CircuitState::HalfOpen
            }
            s => s,
        }
    }

    /// Returns whether the call ran.
    fn call(&mut self, succeeds: bool) -> bool {
        let trial = match self.visible_state() {
            CircuitState::Closed => false,
            CircuitState::HalfOpen => true,
            CircuitState::Open => {
                self.rejections += 1;
                return false;
            }
        };
        if succeeds {
            self.failures = 0;
            self.state = CircuitState::Closed;
        } else {
            self.failures += 1;
            if trial || self.failures >= self.threshold {
                self.state = CircuitState::Open;
                self.opened_at = self.now_ms;
            }
        }
        true
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Any sequence of sequential calls and clock advances keeps the breaker equal to the model.
    #[test]
    fn breaker_follows_the_state_machine(
        threshold in 1_u32..5,
        reset_ms in 1_u64..100,
        ops in proptest::collection::vec(op(), 1..60),
    ) {
        let rt = paused_runtime();
        rt.block_on(async {
            let breaker = CircuitBreaker::new(threshold, Duration::from_millis(reset_ms)).unwrap();
            let mut model = Model {
                threshold, reset_ms, now_ms: 0, state: CircuitState::Closed,
                opened_at: 0, failures: 0, rejections: 0,
            };
            for op in ops {
                match op {
                    Op::Advance { ms } => {
                        tokio::time::advance(Duration::from_millis(ms)).await;
                        model.now_ms += ms;
                    }
                    Op::Call { succeeds } => {
                        let ran = Arc::new(AtomicU32::new(0));
                        let r = ran.clone();
                        let result = breaker
                            .call(async move {
                                r.fetch_add(1, Ordering::SeqCst);
                                if succeeds { Ok(()) } else { Err("fail") }
                            })
                            .await;
                        let model_ran = model.call(succeeds);
                        prop_assert_eq!(ran.load(Ordering::SeqCst) == 1, model_ran);
                        if !model_ran {
                            prop_assert!(matches!(result, Err(Error::CircuitOpen)));
                        }
                    }
                }
                prop_assert_eq!(breaker.state(), model.visible_state());
                prop_assert_eq!(breaker.failure_count(), model.failures);
                prop_assert_eq!(breaker.rejections(), model.rejections);
            }
            Ok(())
        })?;
    }

    /// `retry(n)`: a task whose first `k` attempts fail makes min(k, n) + 1 attempts, calls
    /// on_retry min(k, n) times with 1-based numbers, and succeeds exactly when k <= n.
    #[test]
    fn retry_counts_attempts_and_retries(max in 0_u32..8, failing in 0_u32..12) {
        let rt = paused_runtime();
        rt.block_on(async {
            let scope = Scope::new().unwrap();
            let attempts = Arc::new(AtomicU32::new(0));
            let retries_seen = Arc::new(std::sync::Mutex::new(Vec::new()));
            let a = attempts.clone();
            let seen = retries_seen.clone();
            let (err, value) = scope
                .task(move |attempt| {
                    a.fetch_add(1, Ordering::SeqCst);
                    async move { if attempt <= failing { Err(format!("attempt {attempt}")) } else { Ok(attempt) } }
                })
                .retry(Retry::fixed(max, Duration::from_millis(3)))
                .on_retry(move |_, n| seen.lock().unwrap().push(n))
                .spawn()
                .await;
            let expected_attempts = failing.min(max) + 1;
            prop_assert_eq!(attempts.load(Ordering::SeqCst), expected_attempts);
            prop_assert_eq!(
                retries_seen.lock().unwrap().clone(),
                (1..=failing.min(max)).collect::<Vec<_>>()
            );
            if failing <= max {
                prop_assert_eq!(value, Some(failing + 1));
            } else {
                prop_assert_eq!(err.unwrap().to_string(), format!("attempt {expected_attempts}"));
            }
            scope.close().await.unwrap();
            Ok(())
        })?;
    }
}
