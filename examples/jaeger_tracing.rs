//! Order processing traced end to end with OpenTelemetry: validate the order, charge the card
//! (the payment gateway times out once and the charge is retried), then send the notifications
//! (the SMS provider is down: a failed, non-critical task).
//!
//! Every order is one scope with a tracer, so its span and its tasks' spans go to the OTLP/HTTP
//! endpoint (default `http://localhost:4318/v1/traces`, or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`):
//!
//! ```text
//! process-order                      scope.timeout, scope.concurrency, scope.errors = 1, order.id
//! ├── scope.task  step=validate-order
//! ├── scope.task  step=process-payment   payment.attempts = 2, task.retry.max_retries = 1,
//! │   │                                  task.retry.succeeded_after = 2
//! │   ├── payment-attempt  attempt=1     (gateway timeout: the task's retry policy runs it again)
//! │   └── payment-attempt  attempt=2
//! ├── scope.task  step=send-email
//! └── scope.task  step=send-sms          status ERROR, exception: SMS provider unavailable
//! ```
//!
//! Start Jaeger with `docker compose -f monitoring/docker-compose.yml up -d jaeger`, run
//! `cargo run -p go-go-scope-examples --example jaeger_tracing`, and open
//! http://localhost:16686 (service `order-service`).

use std::time::Duration;

use go_go_scope::otel::OtelPipeline;
use go_go_scope::{Error, Retry, Scope, ScopeTracer, record_task_attr};
use tokio::time::sleep;
use tracing::Instrument;
use tracing_subscriber::Layer;
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

#[derive(Debug)]
struct Receipt {
    order_id: u64,
    charged_cents: u64,
}

#[derive(Debug, thiserror::Error)]
enum OrderError {
    #[error("order {0} has no items")]
    Empty(u64),
    #[error("payment gateway timed out")]
    GatewayTimeout,
    #[error("SMS provider unavailable")]
    SmsDown,
}

async fn validate_order(order_id: u64) -> Result<u64, OrderError> {
    record_task_attr("step", "validate-order");
    sleep(Duration::from_millis(15)).await;
    if order_id == 0 {
        return Err(OrderError::Empty(order_id));
    }
    Ok(4_999)
}

/// One attempt at charging the card; the gateway times out on the first. The task that runs it
/// retries it (see `process_order`), so each attempt is a fresh call.
async fn charge_card(order_id: u64, cents: u64, attempt: u32) -> Result<Receipt, OrderError> {
    record_task_attr("step", "process-payment");
    let charge = async {
        sleep(Duration::from_millis(25)).await;
        if attempt == 1 {
            Err(OrderError::GatewayTimeout)
        } else {
            Ok(Receipt {
                order_id,
                charged_cents: cents,
            })
        }
    };
    let receipt = charge
        .instrument(tracing::info_span!("payment-attempt", attempt))
        .await?;
    record_task_attr("payment.attempts", attempt);
    Ok(receipt)
}

async fn send_email(order_id: u64) -> Result<(), OrderError> {
    record_task_attr("step", "send-email");
    sleep(Duration::from_millis(10)).await;
    tracing::info!(order_id, "confirmation e-mail sent");
    Ok(())
}

async fn send_sms(_order_id: u64) -> Result<(), OrderError> {
    record_task_attr("step", "send-sms");
    sleep(Duration::from_millis(5)).await;
    Err(OrderError::SmsDown)
}

async fn process_order(order_id: u64) -> Result<Receipt, Error> {
    let scope = Scope::builder()
        .name("process-order")
        .timeout(Duration::from_secs(5))
        .concurrency(4)
        .tracer(ScopeTracer::global())
        .attr("order.id", order_id);
    Scope::run(scope, |s| async move {
        let cents = s.try_spawn(validate_order(order_id)).result().await?;
        // Retried once, 10 ms after a failure: the task's span records the policy and that
        // the second attempt succeeded.
        let receipt = s
            .task(move |attempt| charge_card(order_id, cents, attempt))
            .retry(Retry::fixed(1, Duration::from_millis(10)))
            .on_retry(|error, retry| tracing::warn!(%error, retry, "charge failed, retrying"))
            .spawn()
            .result()
            .await?;
        // Notifications are best effort: a failure is logged, not fatal.
        let email = s.try_spawn(send_email(order_id));
        let sms = s.try_spawn(send_sms(order_id));
        for (channel, (err, _)) in [("email", email.await), ("sms", sms.await)] {
            if let Some(err) = err {
                tracing::warn!(order_id, channel, %err, "notification failed");
            }
        }
        Ok::<_, Error>(receipt)
    })
    .await?
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let pipeline = OtelPipeline::new("order-service");
    let endpoint = pipeline.resolved_endpoint();
    let otel = pipeline.build()?;
    tracing_subscriber::registry()
        .with(otel.layer())
        .with(tracing_subscriber::fmt::layer().with_filter(LevelFilter::INFO))
        .init();

    let runtime = tokio::runtime::Runtime::new()?;
    let receipt = runtime.block_on(process_order(1001))?;
    println!(
        "order {} charged {} cents",
        receipt.order_id, receipt.charged_cents
    );
    drop(runtime);

    // Outside the runtime: shutdown waits for the exporter's HTTP round trip.
    otel.shutdown()?;
    println!("trace exported to {endpoint}");
    Ok(())
}
