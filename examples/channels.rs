//! Producers and consumers over a bounded channel, with backpressure.
//!
//! Three producers generate work faster than two consumers can handle it. The channel holds at
//! most four items, so a producer that gets ahead waits in `send` until a consumer catches up:
//! memory stays bounded however fast the producers are. A `Select` with a timeout reports
//! progress; when the scope ends, the channel closes and everything is accounted for.
//!
//! Run: `cargo run -p go-go-scope-examples --example channels`

use std::time::Duration;

use go_go_scope::{Error, Scope, Select};
use tokio::time::{Instant, sleep};

struct Job {
    producer: u32,
    number: u32,
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let started = Instant::now();
    let handled = Scope::run(Scope::builder().name("pipeline"), |s| async move {
        let jobs = s.channel::<Job>(4);
        let progress = s.channel::<String>(16);

        for producer in 1..=3 {
            let jobs = jobs.clone();
            let _producer = s.spawn(async move {
                for number in 1..=5 {
                    let queued_at = Instant::now();
                    // Waits while the buffer is full: this is the backpressure.
                    if let Err(back) = jobs.send(Job { producer, number }).await {
                        let job = back.into_inner();
                        println!(
                            "producer {producer}: channel closed, job {} came back",
                            job.number
                        );
                        return;
                    }
                    let waited = queued_at.elapsed();
                    if waited > Duration::from_millis(5) {
                        println!(
                            "producer {producer}: waited {waited:?} for room for job {number}"
                        );
                    }
                }
            });
        }

        let consumers: Vec<_> = (1..=2)
            .map(|consumer| {
                let (jobs, progress) = (jobs.clone(), progress.clone());
                s.spawn(async move {
                    let mut done = 0;
                    while let Some(job) = jobs.recv().await {
                        sleep(Duration::from_millis(20)).await; // the slow part
                        done += 1;
                        let note = format!(
                            "consumer {consumer} finished job {}.{}",
                            job.producer, job.number
                        );
                        if progress.send(note).await.is_err() {
                            break; // nobody listens any more
                        }
                    }
                    done
                })
            })
            .collect();

        // Report progress until every job is handled.
        let mut handled = 0;
        while handled < 15 {
            let event = Select::new()
                .recv(&progress, Some)
                .timeout(Duration::from_millis(100))
                .await;
            match event {
                Ok(Some(note)) => {
                    handled += 1;
                    println!("[{:>4} ms] {note}", started.elapsed().as_millis());
                }
                Ok(None) => {}
                Err(e) if e.is_timeout() => println!("no progress for 100 ms"),
                Err(e) => return Err(e),
            }
        }
        jobs.close();
        let mut per_consumer = Vec::new();
        for c in consumers {
            per_consumer.push(c.result().await?);
        }
        println!("jobs per consumer: {per_consumer:?}");
        Ok::<_, Error>(handled)
    })
    .await??;
    println!("{handled} jobs handled in {:?}", started.elapsed());
    Ok(())
}
