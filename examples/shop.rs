//! A pretend shop backend shared by the `compare_scope` and `compare_tokio` examples, so that
//! both programs differ only in how they orchestrate the calls.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration;

use tokio::time::sleep;

/// A user record.
#[derive(Debug, Clone)]
pub struct User {
    /// The user's id.
    pub id: u64,
    /// The user's name.
    pub name: String,
}

/// One order of a user.
#[derive(Debug, Clone)]
pub struct Order {
    /// The order's id.
    pub id: u64,
    /// Its total, in cents.
    pub total_cents: u64,
}

/// What a request handler returns.
#[derive(Debug)]
pub struct Page {
    /// The user.
    pub user: User,
    /// Their orders.
    pub orders: Vec<Order>,
}

impl fmt::Display for Page {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let total: u64 = self.orders.iter().map(|o| o.total_cents).sum();
        write!(
            f,
            "{} has {} orders worth ${}.{:02}",
            self.user.name,
            self.orders.len(),
            total / 100,
            total % 100
        )
    }
}

/// The backend's error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError(pub &'static str);

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} service unavailable", self.0)
    }
}

impl std::error::Error for ApiError {}

/// The two services, with switches to make them misbehave, and counters that show which calls
/// ran to the end and which were cancelled half-way.
#[derive(Debug, Default)]
pub struct Api {
    user_failures: AtomicU32,
    orders_down: AtomicBool,
    user_calls_started: AtomicU32,
    user_calls_finished: AtomicU32,
}

impl Api {
    /// The next `n` user lookups fail.
    pub fn fail_user_lookups(&self, n: u32) {
        self.user_failures.store(n, Ordering::SeqCst);
    }

    /// Takes the orders service down (or brings it back).
    pub fn set_orders_down(&self, down: bool) {
        self.orders_down.store(down, Ordering::SeqCst);
    }

    /// `(started, finished)` user lookups: the difference were cancelled mid-call.
    pub fn user_calls(&self) -> (u32, u32) {
        (
            self.user_calls_started.load(Ordering::SeqCst),
            self.user_calls_finished.load(Ordering::SeqCst),
        )
    }

    /// Looks a user up (80 ms). Takes an `Arc` so the future owns what it needs and can be
    /// spawned.
    pub async fn fetch_user(self: Arc<Self>, id: u64) -> Result<User, ApiError> {
        self.user_calls_started.fetch_add(1, Ordering::SeqCst);
        sleep(Duration::from_millis(80)).await;
        self.user_calls_finished.fetch_add(1, Ordering::SeqCst);
        let failing = self
            .user_failures
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        if failing {
            return Err(ApiError("user"));
        }
        Ok(User {
            id,
            name: "Ada".to_owned(),
        })
    }

    /// Lists a user's orders (30 ms; 5 ms to fail when the service is down).
    pub async fn fetch_orders(self: Arc<Self>, user_id: u64) -> Result<Vec<Order>, ApiError> {
        if self.orders_down.load(Ordering::SeqCst) {
            sleep(Duration::from_millis(5)).await;
            return Err(ApiError("orders"));
        }
        sleep(Duration::from_millis(30)).await;
        Ok(vec![
            Order {
                id: user_id * 100 + 1,
                total_cents: 1999,
            },
            Order {
                id: user_id * 100 + 2,
                total_cents: 4500,
            },
        ])
    }
}
