//! Scope metrics in an application's own `metrics` recorder: `metrics-exporter-prometheus`
//! serves them at `http://127.0.0.1:9097/metrics`, beside the application's own counter.
//!
//! Every batch is a scope named `import-batch` built with `metrics_facade(true)` and a
//! concurrency limit of 2. It imports four records: the second fails once and succeeds on its
//! retry, the fourth is malformed. So each batch adds 4 to
//! `goscope_tasks_spawned_total{scope="import-batch"}`, 3 to `goscope_tasks_completed_total`,
//! 1 to `goscope_tasks_failed_total` and 1 to `goscope_task_retries_total`; the application
//! counts `app_batches_total` itself.
//!
//! ```text
//! cargo run -p go-go-scope-examples --example metrics_facade -- --batches 5
//! curl -s http://127.0.0.1:9097/metrics | grep import-batch
//! ```
//!
//! The address is `--addr`, else the `GOSCOPE_FACADE_EXAMPLE` variable, else 127.0.0.1:9097.

use std::net::SocketAddr;
use std::time::Duration;

use go_go_scope::Scope;
use metrics_exporter_prometheus::PrometheusBuilder;
use tokio::time::sleep;

struct Options {
    addr: SocketAddr,
    batches: u64,
}

fn parse_args() -> Result<Options, String> {
    let addr = std::env::var("GOSCOPE_FACADE_EXAMPLE").unwrap_or("127.0.0.1:9097".into());
    let mut options = Options {
        addr: addr
            .parse()
            .map_err(|e| format!("GOSCOPE_FACADE_EXAMPLE={addr}: {e}"))?,
        batches: 5,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let value = args.next().ok_or(format!("{arg} needs a value"))?;
        match arg.as_str() {
            "--addr" => options.addr = value.parse().map_err(|e| format!("--addr {value}: {e}"))?,
            "--batches" => {
                options.batches = value
                    .parse()
                    .map_err(|e| format!("--batches {value}: {e}"))?
            }
            other => return Err(format!("unknown option {other} (use --addr, --batches)")),
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

async fn run_batch(batch: u64) -> Result<(), go_go_scope::Error> {
    let scope = Scope::builder()
        .name("import-batch")
        .concurrency(2)
        .metrics_facade(true)
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
        match task.result().await {
            Ok(_) => imported += 1,
            Err(error) => println!("batch {batch}: {error}"),
        }
    }
    println!("batch {batch}: {imported} of 4 records imported");
    metrics::counter!("app_batches_total").increment(1);
    scope.close().await
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let options = parse_args()?;
    // The application's recorder, installed before any scope records into it.
    PrometheusBuilder::new()
        .with_http_listener(options.addr)
        .install()?;
    metrics::describe_counter!("app_batches_total", "Batches this example imported.");
    println!("metrics at http://{}/metrics", options.addr);
    for batch in 1..=options.batches {
        run_batch(batch).await?;
    }
    println!(
        "{} batches done; serving metrics until Ctrl-C",
        options.batches
    );
    tokio::signal::ctrl_c().await?;
    Ok(())
}
