//! Go's goroutine dump for scopes: on SIGQUIT or SIGUSR1 the process prints its live tree —
//! every scope, every task, and what each task is waiting on — and carries on.
//!
//! The service here is stuck on purpose, in four ways: two tasks each wait to receive what the
//! other should send (a deadlock on two channels), a writer waits for the only permit of its
//! scope while another holds it, that holder waits on a flush that never ends (a
//! `tracked_wait`), and a client waits out a retry delay.
//!
//! ```text
//! cargo run -p go-go-scope-examples --example scope_dump             # dumps once (it signals itself) and exits
//! cargo run -p go-go-scope-examples --example scope_dump -- --serve  # dumps on every signal until Ctrl-C
//! kill -USR1 <pid>     # or kill -QUIT <pid>, or Ctrl-\ in its terminal
//! ```

use std::time::Duration;

use go_go_scope::{Retry, Scope, introspect, tracked_wait};

/// Builds the stuck service (its root scope and the `ledger` child, whose handle keeps it
/// open); returns once every task has reached the wait it is stuck in.
async fn stuck_service() -> Result<(Scope, Scope), go_go_scope::Error> {
    let service = Scope::builder()
        .name("service")
        .timeout(Duration::from_secs(3600))
        .build()?;

    // A deadlock: each task waits to receive on the channel the other would send on.
    let to_ping = service.channel::<u64>(1);
    let to_pong = service.channel::<u64>(1);
    let (ping_in, pong_out) = (to_ping.clone(), to_pong.clone());
    drop(
        service
            .task(move |_| {
                let (ping_in, pong_out) = (ping_in.clone(), pong_out.clone());
                async move {
                    let ball = ping_in.recv().await.unwrap_or_default();
                    pong_out.send(ball + 1).await.map_err(|_| "pong left")
                }
            })
            .name("ping")
            .spawn(),
    );
    let (pong_in, ping_out) = (to_pong, to_ping);
    drop(
        service
            .task(move |_| {
                let (pong_in, ping_out) = (pong_in.clone(), ping_out.clone());
                async move {
                    let ball = pong_in.recv().await.unwrap_or_default();
                    ping_out.send(ball + 1).await.map_err(|_| "ping left")
                }
            })
            .name("pong")
            .spawn(),
    );

    // One permit: the first writer holds it while it waits on a flush; the second queues.
    let ledger = Scope::builder()
        .name("ledger")
        .parent(&service)
        .concurrency(1)
        .build()?;
    let flush = std::sync::Arc::new(tokio::sync::Notify::new());
    drop(
        ledger
            .task(move |_| {
                let flush = flush.clone();
                async move {
                    tracked_wait("disk flush", flush.notified()).await;
                    Ok::<_, &str>(())
                }
            })
            .name("writer-1")
            .spawn(),
    );
    drop(
        ledger
            .task(|_| async { Ok::<_, &str>(()) })
            .name("writer-2")
            .spawn(),
    );

    // A client whose backend is down: between attempts it waits out the retry delay.
    drop(
        service
            .task(|_| async { Err::<(), _>("rates backend unavailable") })
            .name("fetch-rates")
            .retry(Retry::fixed(100, Duration::from_secs(30)))
            .spawn(),
    );

    // Wait until each task sits in its wait, so the dump below shows the whole picture.
    for _ in 0..500 {
        let waiting = service
            .tree()
            .tasks()
            .filter(|(_, task)| task.state.waiting_on().is_some())
            .count();
        if waiting == 5 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Ok((service, ledger))
}

#[cfg(unix)]
#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    use tokio::signal::unix::{SignalKind, signal};

    let serve = std::env::args().any(|arg| arg == "--serve");
    let mut quit = signal(SignalKind::quit())?;
    let mut usr1 = signal(SignalKind::user_defined1())?;
    let (service, _ledger) = stuck_service().await?;
    let pid = std::process::id();
    if serve {
        println!("pid {pid}: send SIGQUIT or SIGUSR1 for a dump, Ctrl-C to stop");
    } else {
        // Stand in for an operator: `kill -USR1 <pid>`.
        std::process::Command::new("kill")
            .args(["-USR1", &pid.to_string()])
            .status()?;
    }
    loop {
        let name = tokio::select! {
            _ = quit.recv() => "SIGQUIT",
            _ = usr1.recv() => "SIGUSR1",
            _ = tokio::signal::ctrl_c() => break,
        };
        println!("--- {name}: live scopes and tasks ---");
        print!("{}", introspect::snapshot());
        if !serve {
            break;
        }
    }
    service.close().await?;
    Ok(())
}

#[cfg(not(unix))]
#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Without Unix signals, the dump is printed once.
    let (service, _ledger) = stuck_service().await?;
    print!("{}", introspect::snapshot());
    service.close().await?;
    Ok(())
}
