//! Go-style error handling inside tasks with `try_go!` and `try_go_raw!`.
//!
//! 1. Order processing: one task runs every step of an order. Each fallible step becomes a
//!    `(error, value)` pair right where it happens, and the code decides per step: the payment
//!    is critical (its error fails the task), the notifications and the cache write are best
//!    effort (their errors, and even a panic, are only logged).
//! 2. Partial results: load many users in one task, keep the ones that loaded and a list of the
//!    ones that did not, instead of failing the whole batch on the first error.
//! 3. The same batch concurrently, with `parallel_aggregate`.
//!
//! The services (database, payments, mail, SMS, cache) are fakes provided to the application's
//! scope, and found by type from any task below it.
//!
//! Run: `cargo run -p go-go-scope-examples --example go_go_try`

use std::collections::HashMap;
use std::fmt;
use std::sync::Mutex;
use std::time::Duration;

use go_go_scope::{Error, Scope, go, scoped, try_go, try_go_raw};
use tokio::time::sleep;

// ---------------------------------------------------------------------------------------------
// The domain and its errors.

#[derive(Debug, Clone)]
struct Order {
    id: u64,
    user_id: u64,
    amount_cents: u64,
    currency: String,
}

#[derive(Debug, Clone)]
struct User {
    id: u64,
    email: String,
    phone: String,
    profile_json: String,
}

#[derive(Debug, Clone)]
struct Payment {
    transaction: String,
    amount_cents: u64,
}

#[derive(Debug)]
struct Processed {
    order_id: u64,
    payment: Payment,
    user: Option<User>,
}

/// A database error with a cause, to show what `try_go_raw!` keeps.
#[derive(Debug)]
enum DbError {
    NotFound(&'static str, u64),
    CheckFailed(String),
    Connection(std::io::Error),
}

impl fmt::Display for DbError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DbError::NotFound(what, id) => write!(f, "no {what} with id {id}"),
            DbError::CheckFailed(why) => write!(f, "check failed: {why}"),
            DbError::Connection(_) => f.write_str("database connection lost"),
        }
    }
}

impl std::error::Error for DbError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            DbError::Connection(io) => Some(io),
            DbError::NotFound(..) | DbError::CheckFailed(_) => None,
        }
    }
}

#[derive(Debug)]
struct Declined(String);

impl fmt::Display for Declined {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "card declined: {}", self.0)
    }
}

impl std::error::Error for Declined {}

/// Why an order task failed: only the critical steps produce one.
#[derive(Debug)]
enum OrderError {
    NoOrderData(String),
    Payment(String),
}

impl fmt::Display for OrderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OrderError::NoOrderData(why) => write!(f, "no usable order data: {why}"),
            OrderError::Payment(why) => write!(f, "payment failed: {why}"),
        }
    }
}

impl std::error::Error for OrderError {}

// ---------------------------------------------------------------------------------------------
// Fake services, with failures chosen by id.

#[derive(Default)]
struct Services {
    /// Order data cached as `key=value` pairs, as a previous step left it.
    order_cache: Mutex<HashMap<u64, String>>,
    processed: Mutex<HashMap<u64, String>>,
}

impl Services {
    fn seeded() -> Services {
        let services = Services::default();
        let mut cache = services.order_cache.lock().unwrap();
        cache.insert(1001, "user=7;amount=4999;currency=EUR".into());
        cache.insert(1002, "user=8;amount=oops".into()); // corrupt
        cache.insert(1003, "user=9;amount=120000;currency=EUR".into());
        cache.insert(1004, "user=404;amount=1500;currency=USD".into());
        drop(cache);
        services
    }

    async fn order_from_db(&self, id: u64) -> Result<Order, DbError> {
        sleep(Duration::from_millis(5)).await;
        match id {
            1002 => Ok(Order {
                id,
                user_id: 8,
                amount_cents: 2500,
                currency: "EUR".into(),
            }),
            _ => Err(DbError::NotFound("order", id)),
        }
    }

    async fn validate(&self, order: &Order) -> Result<(), DbError> {
        sleep(Duration::from_millis(2)).await;
        if order.amount_cents > 100_000 {
            return Err(DbError::CheckFailed(format!(
                "{} cents is above the customer's usual spending",
                order.amount_cents
            )));
        }
        Ok(())
    }

    async fn user(&self, id: u64) -> Result<User, DbError> {
        sleep(Duration::from_millis(5)).await;
        match id {
            404 => Err(DbError::Connection(std::io::Error::new(
                std::io::ErrorKind::ConnectionReset,
                "connection reset by peer",
            ))),
            3 => Err(DbError::NotFound("user", id)),
            _ => Ok(User {
                id,
                email: format!("user{id}@example.com"),
                phone: format!("+100000{id:04}"),
                profile_json: if id == 5 {
                    "{broken".into()
                } else {
                    format!("{{\"theme\":\"dark\",\"id\":{id}}}")
                },
            }),
        }
    }

    async fn charge(&self, order: &Order) -> Result<Payment, Declined> {
        sleep(Duration::from_millis(10)).await;
        if order.amount_cents > 100_000 {
            return Err(Declined("amount above the card's limit".into()));
        }
        Ok(Payment {
            transaction: format!("tx-{}", order.id),
            amount_cents: order.amount_cents,
        })
    }

    async fn send_email(&self, to: &str, _text: &str) -> Result<(), std::io::Error> {
        sleep(Duration::from_millis(3)).await;
        if to.starts_with("user8") {
            return Err(std::io::Error::other("mailbox full"));
        }
        Ok(())
    }

    async fn send_sms(&self, to: &str, _text: &str) -> Result<(), std::io::Error> {
        sleep(Duration::from_millis(3)).await;
        if to.ends_with('7') {
            return Err(std::io::Error::other("SMS gateway timeout"));
        }
        Ok(())
    }

    fn cache_processed(&self, order_id: u64, payment: &Payment) -> Result<(), std::io::Error> {
        if order_id == 1002 {
            panic!("cache index corrupted"); // a bug, not an error value
        }
        let mut processed = self.processed.lock().unwrap();
        if processed.len() >= 100 {
            return Err(std::io::Error::other("cache full"));
        }
        processed.insert(order_id, payment.transaction.clone());
        Ok(())
    }
}

/// Parses `user=7;amount=4999;currency=EUR`.
fn parse_order(id: u64, text: &str) -> Result<Order, String> {
    let fields: HashMap<&str, &str> = text
        .split(';')
        .filter_map(|kv| kv.split_once('='))
        .collect();
    let number = |key: &str| -> Result<u64, String> {
        let raw = fields.get(key).ok_or(format!("`{key}` is missing"))?;
        raw.parse().map_err(|e| format!("`{key}={raw}`: {e}"))
    };
    Ok(Order {
        id,
        user_id: number("user")?,
        amount_cents: number("amount")?,
        currency: fields
            .get("currency")
            .ok_or("`currency` is missing")?
            .to_string(),
    })
}

/// The whole chain of causes of an error, for a log line.
fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(e) = cause {
        text.push_str(&format!(" <- caused by: {e}"));
        cause = e.source();
    }
    text
}

// ---------------------------------------------------------------------------------------------
// 1. One task per order; each step's error handled where it happens.

#[scoped(timeout = "30s")]
async fn process_order(order_id: u64) -> Result<Option<Processed>, Error> {
    let services = Scope::current().use_::<Services>()?;
    let task = go!(name = "process-order", async move {
        // Parse the cached order data. If that fails, carry on with the database's copy.
        let cached = services.order_cache.lock().unwrap().get(&order_id).cloned();
        let (parse_err, order) = try_go!(parse_order(order_id, &cached.unwrap_or_default()));
        let order = match (parse_err, order) {
            (None, Some(order)) => order,
            (Some(why), _) => {
                println!("  cached order data unusable ({why}); asking the database");
                let (db_err, order) = try_go!(services.order_from_db(order_id).await);
                order.ok_or_else(|| OrderError::NoOrderData(db_err.unwrap_or_default()))?
            }
            (None, None) => unreachable!("a pair has one side set"),
        };

        // Validate: a warning, not a failure. `try_go!` gives the error as a message.
        let (validate_err, _) = try_go!(services.validate(&order).await);
        if let Some(warning) = validate_err {
            println!("  validation warning: {warning}");
        }

        // The user, with the raw error: its type and its chain of causes are kept.
        let (user_err, user) = try_go_raw!(services.user(order.user_id).await);
        if let Some(err) = &user_err {
            println!("  user lookup failed: {}", chain(err));
            if matches!(err, DbError::Connection(_)) {
                println!("  (a connection error: the notifications will be sent by a retry job)");
            }
        }

        // The payment is critical: its error fails the whole task.
        let (payment_err, payment) = try_go!(services.charge(&order).await);
        if let Some(why) = payment_err {
            return Err(OrderError::Payment(why));
        }
        let payment = payment.expect("no error, so a value");

        // Notifications are best effort: log and go on.
        if let Some(user) = &user {
            let text = format!("order {} confirmed", order.id);
            let (email_err, _) = try_go!(services.send_email(&user.email, &text).await);
            let (sms_err, _) = try_go!(services.send_sms(&user.phone, &text).await);
            if let Some(e) = email_err {
                println!("  email not sent: {e}");
            }
            if let Some(e) = sms_err {
                println!("  SMS not sent: {e}");
            }
        }

        // Caching is best effort too; a panic in it is caught and becomes the error message.
        let (cache_err, _) = try_go!(services.cache_processed(order.id, &payment));
        if let Some(e) = cache_err {
            println!("  cache not updated: {e}");
        }

        println!(
            "  charged {}.{:02} {} ({})",
            payment.amount_cents / 100,
            payment.amount_cents % 100,
            order.currency,
            payment.transaction
        );
        Ok(Processed {
            order_id: order.id,
            payment,
            user,
        })
    });

    let (err, processed) = task.await;
    if let Some(err) = err {
        // The task's own error comes back with its type.
        match err.downcast_ref::<OrderError>() {
            Some(OrderError::Payment(why)) => println!("  order {order_id} rejected: {why}"),
            _ => println!("  order {order_id} failed: {err}"),
        }
        return Ok(None);
    }
    Ok(processed)
}

// ---------------------------------------------------------------------------------------------
// 2. Partial results: a batch that keeps going past failures.

#[derive(Debug)]
struct Loaded {
    user: User,
    /// `None` when the stored profile does not parse: the user still counts as loaded.
    profile: Option<String>,
}

fn parse_profile(json: &str) -> Result<String, String> {
    let inner = json
        .strip_prefix('{')
        .and_then(|rest| rest.strip_suffix('}'))
        .ok_or("not a JSON object")?;
    Ok(format!("{} field(s)", inner.split(',').count()))
}

/// Users that loaded, and `(id, why)` for those that did not.
type Batch = (Vec<Loaded>, Vec<(u64, String)>);

#[scoped(timeout = "5s")]
async fn load_users(ids: Vec<u64>) -> Result<Batch, Error> {
    let services = Scope::current().use_::<Services>()?;
    go!(async move {
        let mut successful = Vec::new();
        let mut failed = Vec::new();
        for id in ids {
            let (fetch_err, user) = try_go!(services.user(id).await);
            let Some(user) = user else {
                failed.push((id, fetch_err.unwrap_or_default()));
                continue; // do not stop: the next user may load
            };
            let (_, profile) = try_go!(parse_profile(&user.profile_json));
            successful.push(Loaded { user, profile });
        }
        (successful, failed)
    })
    .result()
    .await
}

// ---------------------------------------------------------------------------------------------
// 3. The same batch, every user loaded concurrently.

#[scoped(timeout = "5s", concurrency = 4)]
async fn load_users_concurrently(ids: Vec<u64>) -> Result<(), Error> {
    let services = Scope::current().use_::<Services>()?;
    let loads = ids.iter().map(|&id| {
        let services = services.clone();
        async move { services.user(id).await }
    });
    let report = Scope::current().parallel_aggregate(loads).await;
    for (index, user) in &report.completed {
        println!("  #{index}: loaded user {}", user.id);
    }
    for (index, err) in &report.errors {
        println!("  #{index}: user {} failed: {err}", ids[*index]);
    }
    println!("  all loaded: {}", report.all_completed);
    Ok(())
}

// ---------------------------------------------------------------------------------------------

#[scoped(name = "shop")]
#[tokio::main]
async fn main() -> Result<(), Error> {
    // A caught panic still goes through the panic hook, like every panic; keep it to one line.
    std::panic::set_hook(Box::new(|info| {
        let message = info.payload().downcast_ref::<&str>().copied();
        println!("  [panic hook] {}", message.unwrap_or("a panic"));
    }));
    // Provided to the application's scope; every scope below finds it by type.
    Scope::current().provide(Services::seeded());

    println!("1. order processing: critical and best-effort steps");
    for order_id in [1001, 1002, 1003, 1004] {
        println!("order {order_id}:");
        match process_order(order_id).await? {
            Some(done) => println!(
                "  => processed order {} for {} ({})",
                done.order_id,
                done.user.map_or("an unknown user".to_owned(), |u| u.email),
                done.payment.transaction
            ),
            None => println!("  => not processed"),
        }
    }

    println!("\n2. partial results, one user at a time");
    let (loaded, failed) = load_users(vec![1, 2, 3, 4, 5, 6]).await?;
    for l in &loaded {
        println!(
            "  user {}: profile {}",
            l.user.id,
            l.profile.as_deref().unwrap_or("unreadable, left empty")
        );
    }
    for (id, why) in &failed {
        println!("  user {id}: not loaded ({why})");
    }

    println!("\n3. the same users, concurrently, with parallel_aggregate");
    load_users_concurrently(vec![1, 2, 3, 4, 5, 6]).await?;
    Ok(())
}
