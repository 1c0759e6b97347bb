//! Scope metrics through an OpenTelemetry meter, exported over OTLP/HTTP (protobuf) by the
//! OpenTelemetry SDK, to a collector at `http://localhost:4318/v1/metrics` (or `--endpoint`).
//!
//! Every batch is a scope named `import-batch` built with `otel_meter(..)` and a concurrency
//! limit of 2. It imports four records: the second fails once and succeeds on its retry, the
//! fourth is malformed. So each batch adds 4 to `goscope.tasks.spawned{scope="import-batch"}`,
//! 3 to `goscope.tasks.ended{outcome="ok"}`, 1 to `goscope.tasks.ended{outcome="error"}` and 1
//! to `goscope.task.retries`. The provider is shut down at the end, which exports the totals.
//!
//! ```text
//! # with an OTLP/HTTP receiver of metrics listening (an OpenTelemetry Collector, ...):
//! cargo run -p go-go-scope-examples --example otel_metrics -- --batches 5
//! ```

use std::time::Duration;

use go_go_scope::opentelemetry::metrics::MeterProvider as _;
use go_go_scope::{Scope, ScopeMeter};
use opentelemetry_otlp::{MetricExporter, Protocol, WithExportConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::metrics::SdkMeterProvider;
use tokio::time::sleep;

struct Options {
    endpoint: String,
    batches: u64,
}

fn parse_args() -> Result<Options, String> {
    let mut options = Options {
        endpoint: "http://localhost:4318/v1/metrics".into(),
        batches: 5,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let value = args.next().ok_or(format!("{arg} needs a value"))?;
        match arg.as_str() {
            "--endpoint" => options.endpoint = value,
            "--batches" => {
                options.batches = value
                    .parse()
                    .map_err(|e| format!("--batches {value}: {e}"))?
            }
            other => {
                return Err(format!(
                    "unknown option {other} (use --endpoint, --batches)"
                ));
            }
        }
    }
    Ok(options)
}

/// Imports one record; `attempt` is 1-based.
async fn import(record: u32, attempt: u32) -> Result<u32, String> {
    sleep(Duration::from_millis(5 * u64::from(record))).await;
    match (record, attempt) {
        (2, 1) => Err("the database was busy".into()),
        (4, _) => Err("record 4 is malformed".into()),
        _ => Ok(record),
    }
}

async fn run_batch(meter: &ScopeMeter, batch: u64) -> Result<(), go_go_scope::Error> {
    let scope = Scope::builder()
        .name("import-batch")
        .concurrency(2)
        .otel_meter(meter.clone())
        .build()?;
    let tasks: Vec<_> = (1..=4)
        .map(|record| {
            scope
                .task(move |attempt| import(record, attempt))
                .name(format!("record-{record}"))
                .retry(1)
                .retry_if(|error| !error.to_string().contains("malformed"))
                .spawn()
        })
        .collect();
    let mut imported = 0;
    for task in tasks {
        if task.result().await.is_ok() {
            imported += 1;
        }
    }
    println!("batch {batch}: {imported} of 4 records imported");
    scope.close().await
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let options = parse_args()?;
    // The application's own pipeline: an OTLP exporter read every 60 s (and at shutdown).
    let exporter = MetricExporter::builder()
        .with_http()
        .with_protocol(Protocol::HttpBinary)
        .with_endpoint(&options.endpoint)
        .build()?;
    let provider = SdkMeterProvider::builder()
        .with_periodic_exporter(exporter)
        .with_resource(
            Resource::builder()
                .with_service_name("otel-metrics-example")
                .build(),
        )
        .build();
    // The scope instruments, created once in the application's meter.
    let meter = ScopeMeter::new(&provider.meter("otel_metrics"));
    for batch in 1..=options.batches {
        run_batch(&meter, batch).await?;
    }
    // Exports what was recorded; the exporter's blocking HTTP client runs off the runtime.
    tokio::task::spawn_blocking(move || provider.shutdown()).await??;
    println!(
        "{} batches exported to {}",
        options.batches, options.endpoint
    );
    Ok(())
}
