//! A batch job that reports to a Prometheus Pushgateway: short-lived processes are not around to
//! be scraped, so they push.
//!
//! While the batch runs, a `MetricsReporter` pushes the batch scope's own numbers every second
//! (group `job=<job>_live`); when it is done, the process-wide registry is pushed once (group
//! `job=<job>`), labelled by scope name like a scrape of `/metrics` would be.
//!
//! ```text
//! docker compose -f monitoring/docker-compose.yml up -d pushgateway prometheus
//! cargo run -p go-go-scope-examples --example prometheus_push -- --gateway http://127.0.0.1:9091
//! curl -s http://127.0.0.1:9091/metrics | grep goscope_tasks
//! ```
//!
//! Options: `--gateway URL`, `--job NAME` (default `goscope_batch`), `--instance NAME` (default
//! `local`), `--user NAME` (basic auth; the password is read from the environment variable
//! `PUSHGATEWAY_PASSWORD`, never from the command line), `--ca-cert PATH` (trust this PEM
//! certificate for an `https://` gateway).

use std::time::Duration;

use go_go_scope::Scope;
use go_go_scope::metrics::{ExportFormat, MetricsReporter, Pushgateway, ReporterOptions};
use tokio::time::sleep;

struct Options {
    gateway: String,
    job: String,
    instance: String,
    user: Option<String>,
    ca_cert: Option<String>,
}

fn parse_args() -> Result<Options, String> {
    let mut options = Options {
        gateway: "http://127.0.0.1:9091".into(),
        job: "goscope_batch".into(),
        instance: "local".into(),
        user: None,
        ca_cert: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let value = args.next().ok_or(format!("{arg} needs a value"))?;
        match arg.as_str() {
            "--gateway" => options.gateway = value,
            "--job" => options.job = value,
            "--instance" => options.instance = value,
            "--user" => options.user = Some(value),
            "--ca-cert" => options.ca_cert = Some(value),
            other => {
                return Err(format!(
                    "unknown option {other} (use --gateway, --job, --instance, --user, \
                     --ca-cert)"
                ));
            }
        }
    }
    Ok(options)
}

/// One record of the batch; every fifth is malformed.
async fn import_record(n: u64) -> Result<u64, String> {
    sleep(Duration::from_millis(10 + n % 7)).await;
    if n.is_multiple_of(5) {
        Err(format!("record {n} is malformed"))
    } else {
        Ok(n * 2)
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let options = parse_args()?;
    // The URL, credentials and certificate are checked here, before any work is done.
    let mut gateway = Pushgateway::builder(options.gateway.clone());
    if let Some(user) = &options.user {
        let password = std::env::var("PUSHGATEWAY_PASSWORD")
            .map_err(|_| "--user needs the password in PUSHGATEWAY_PASSWORD")?;
        gateway = gateway.basic_auth(user.clone(), password);
    }
    if let Some(path) = &options.ca_cert {
        gateway = gateway.root_certificate_pem(std::fs::read(path)?);
    }
    let gateway = gateway.build()?;
    let batch = Scope::builder()
        .name("nightly-batch")
        .metrics(true)
        .concurrency(4)
        .build()?;

    let (live_gateway, live_job, instance) = (
        gateway.clone(),
        format!("{}_live", options.job),
        options.instance.clone(),
    );
    let reporter = MetricsReporter::new(
        &batch,
        ReporterOptions::new(move |text: String| {
            let (gateway, job, instance) =
                (live_gateway.clone(), live_job.clone(), instance.clone());
            async move { gateway.push_text(&job, &instance, text).await }
        })
        .format(ExportFormat::Prometheus)
        .interval(Duration::from_secs(1)),
    );

    let records: Vec<_> = (1..=20)
        .map(|n| batch.try_spawn(import_record(n)))
        .collect();
    let mut imported = 0;
    for record in records {
        match record.await {
            (None, Some(_)) => imported += 1,
            (Some(error), _) => eprintln!("skipped: {error}"),
            (None, None) => {}
        }
    }
    batch.close().await?;
    // The loop ends with the scope; one last push carries the final numbers.
    reporter.report().await?;
    gateway.push(&options.job, &options.instance).await?;
    println!(
        "imported {imported} of 20 records; pushed to {} (job {}, instance {})",
        options.gateway, options.job, options.instance
    );
    Ok(())
}
