//! HTTP calls with per-attempt timeouts, retries, a deadline, hedging and a bounded fan-out,
//! against a small HTTP/1.1 server the example starts on 127.0.0.1.
//!
//! The server is a task of the same scope as the client code: when `main`'s scope ends, the
//! server and every connection it is still serving are cancelled and awaited. The server also
//! reports when a client hangs up, which makes the client-side cancellations visible: a timed
//! out or losing request really drops its connection.
//!
//! Run: `cargo run -p go-go-scope-examples --example http_client`

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use go_go_scope::{Error, ParallelOpts, Retry, Scope, TimeoutOrigin};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::{Instant, sleep};

// ---------------------------------------------------------------------------------------------
// A minimal HTTP client: one request per connection, `Connection: close`.

/// What can go wrong with one request.
#[derive(Debug)]
enum HttpError {
    Io(std::io::Error),
    Status(u16),
    Malformed,
}

impl std::fmt::Display for HttpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HttpError::Io(e) => write!(f, "connection failed: {e}"),
            HttpError::Status(code) => write!(f, "HTTP status {code}"),
            HttpError::Malformed => f.write_str("malformed response"),
        }
    }
}

impl std::error::Error for HttpError {}

impl HttpError {
    /// Worth retrying: the server or the network had a bad moment. A 4xx will not get better.
    fn is_transient(&self) -> bool {
        match self {
            HttpError::Io(_) => true,
            HttpError::Status(code) => *code >= 500,
            HttpError::Malformed => false,
        }
    }
}

/// `GET path`, returning the body of a 2xx response.
async fn get(addr: SocketAddr, path: &str) -> Result<String, HttpError> {
    let mut stream = TcpStream::connect(addr).await.map_err(HttpError::Io)?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(HttpError::Io)?;
    let mut response = Vec::new();
    stream
        .read_to_end(&mut response)
        .await
        .map_err(HttpError::Io)?;
    let response = String::from_utf8(response).map_err(|_| HttpError::Malformed)?;
    let (head, body) = response
        .split_once("\r\n\r\n")
        .ok_or(HttpError::Malformed)?;
    let status: u16 = head
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or(HttpError::Malformed)?;
    if (200..300).contains(&status) {
        Ok(body.to_owned())
    } else {
        Err(HttpError::Status(status))
    }
}

/// The retry policy for idempotent GETs: back off exponentially, retry only transient errors
/// and our own per-attempt timeouts.
fn transient_retries(retries: u32) -> Retry {
    Retry::exponential(retries, Duration::from_millis(20))
        .jitter(true)
        .retry_if(|error| {
            error.is_timeout()
                || error
                    .downcast_ref::<HttpError>()
                    .is_some_and(HttpError::is_transient)
        })
        .on_retry(|error, retry| println!("    client: retry #{retry} after: {error}"))
}

/// The error a failed request ended with, in one line.
fn describe(error: &Error) -> String {
    match error {
        Error::Timeout {
            after,
            scope_or_task: TimeoutOrigin::Task(task),
        } => format!("attempt of `{task}` timed out after {after:?}"),
        Error::Timeout {
            after,
            scope_or_task: TimeoutOrigin::Scope(scope),
        } => format!("deadline of scope `{scope}` ({after:?}) passed"),
        other => match other.downcast_ref::<HttpError>() {
            Some(http) => format!("{http} (an HttpError, kept with its type)"),
            None => other.to_string(),
        },
    }
}

// ---------------------------------------------------------------------------------------------
// A small server: a few routes with delays and failures.

async fn serve(listener: TcpListener, flaky_hits: Arc<AtomicU32>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        // Each connection is a task of the ambient scope: it ends, at the latest, with it.
        let hits = flaky_hits.clone();
        drop(Scope::current().spawn(handle(stream, hits)));
    }
}

async fn handle(mut stream: TcpStream, flaky_hits: Arc<AtomicU32>) {
    let mut head = Vec::new();
    let mut buf = [0_u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    let head = String::from_utf8_lossy(&head);
    let path = head.split(' ').nth(1).unwrap_or("/").to_owned();
    let (delay, status, body) = match path.as_str() {
        "/users/1" => (10, 200, r#"{"id":1,"name":"Ada"}"#.to_owned()),
        "/users/2" => (30, 200, r#"{"id":2,"name":"Grace"}"#.to_owned()),
        "/users/3" => (20, 200, r#"{"id":3,"name":"Edsger"}"#.to_owned()),
        "/slow" => (5_000, 200, "finally".to_owned()),
        "/mirror/eu" => (300, 200, "answer from eu".to_owned()),
        "/mirror/us" => (40, 200, "answer from us".to_owned()),
        "/flaky" if flaky_hits.fetch_add(1, Ordering::SeqCst) < 2 => (5, 503, String::new()),
        "/flaky" => (5, 200, "worked this time".to_owned()),
        _ => (0, 404, String::new()),
    };
    // Wait before answering, noticing if the client hangs up meanwhile.
    let waited = Instant::now();
    tokio::select! {
        () = sleep(Duration::from_millis(delay)) => {}
        _ = stream.read(&mut buf) => {
            println!("    server: client hung up on {path} after {} ms", waited.elapsed().as_millis());
            return;
        }
    }
    println!("    server: GET {path} -> {status}");
    let response = format!(
        "HTTP/1.1 {status} {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        if status == 200 { "OK" } else { "Error" },
        body.len()
    );
    let _ = stream.write_all(response.as_bytes()).await;
}

// ---------------------------------------------------------------------------------------------

#[tokio::main]
async fn main() -> Result<(), Error> {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(Error::from_task_error)?;
    let addr = listener.local_addr().map_err(Error::from_task_error)?;
    println!("server listening on http://{addr}");

    Scope::run(Scope::builder().name("http-example"), |s| async move {
        let _server = s.spawn(serve(listener, Arc::new(AtomicU32::new(0))));

        println!("\n1. one GET, each attempt bounded by 500 ms");
        let user = s
            .task(move |_| get(addr, "/users/1"))
            .name("get /users/1")
            .timeout(Duration::from_millis(500))
            .spawn();
        match user.await {
            (None, Some(body)) => println!("  got {body}"),
            (Some(err), _) => println!("  failed: {}", describe(&err)),
            (None, None) => unreachable!(),
        }

        println!("\n2. a slow endpoint meets the per-attempt timeout");
        let (err, _) = s
            .task(move |_| get(addr, "/slow"))
            .name("get /slow")
            .timeout(Duration::from_millis(100))
            .spawn()
            .await;
        println!("  failed: {}", describe(&err.expect("it times out")));

        println!("\n3. transient 503s are retried with backoff");
        let flaky = s
            .task(move |attempt| {
                println!("    client: attempt {attempt}");
                get(addr, "/flaky")
            })
            .name("get /flaky")
            .timeout(Duration::from_millis(500))
            .retry(transient_retries(4))
            .spawn();
        println!("  got {}", flaky.result().await?);

        println!("\n4. a 404 is not retried, and the error keeps its type");
        let (err, _) = s
            .task(move |attempt| {
                println!("    client: attempt {attempt}");
                get(addr, "/missing")
            })
            .name("get /missing")
            .retry(transient_retries(4))
            .spawn()
            .await;
        let err = err.expect("404");
        assert!(matches!(
            err.downcast_ref::<HttpError>(),
            Some(HttpError::Status(404))
        ));
        println!("  failed: {}", describe(&err));

        println!("\n5. a 250 ms deadline on the whole call bounds every attempt and retry");
        let started = Instant::now();
        let deadline = s.child().name("lookup").timeout(Duration::from_millis(250));
        let outcome = Scope::run(deadline, |lookup| async move {
            lookup
                .task(move |_| get(addr, "/slow"))
                .name("get /slow")
                .timeout(Duration::from_secs(1))
                .retry(transient_retries(10))
                .spawn()
                .await
        })
        .await;
        let err = match outcome {
            Ok((err, _)) => err.expect("the deadline passes"),
            Err(scope_err) => scope_err,
        };
        println!(
            "  failed after {} ms: {}",
            started.elapsed().as_millis(),
            describe(&err)
        );

        println!("\n6. a hedged request: ask two mirrors, keep the first answer");
        let started = Instant::now();
        let (err, fastest) = s
            .race([get(addr, "/mirror/eu"), get(addr, "/mirror/us")])
            .await;
        match (err, fastest) {
            (None, Some(body)) => println!(
                "  got `{body}` in {} ms; the loser was cancelled before race returned",
                started.elapsed().as_millis()
            ),
            (err, _) => println!("  every mirror failed: {err:?}"),
        }
        sleep(Duration::from_millis(20)).await; // lets the server report the hang-up first

        println!("\n7. fan out over four URLs, two at a time, keeping partial results");
        let paths = ["/users/1", "/users/2", "/missing", "/users/3"];
        let fetched = s
            .parallel(
                paths.map(|path| get(addr, path)),
                ParallelOpts {
                    concurrency: Some(2),
                    ..ParallelOpts::default()
                },
            )
            .await;
        for (path, (err, body)) in paths.iter().zip(fetched) {
            match (err, body) {
                (None, Some(body)) => println!("  {path}: {body}"),
                (Some(err), _) => println!("  {path}: {}", describe(&err)),
                (None, None) => unreachable!(),
            }
        }

        println!("\nmain's scope ends: the server task and its connections are cancelled");
        Ok::<_, Error>(())
    })
    .await??;
    println!("done: nothing is left running");
    Ok(())
}
