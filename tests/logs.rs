//! Log events write user text (scope and task names, error messages, cancellation reasons) as
//! values: a line break inside one cannot start a log line of its own.

use std::io::{self, Write};
use std::sync::{Arc, Mutex};

use go_go_scope::{Error, Hooks, Scope};
use tracing::subscriber::DefaultGuard;
use tracing_subscriber::fmt::MakeWriter;

/// Everything a `fmt` subscriber writes, in one buffer.
#[derive(Clone, Default)]
struct Buffer(Arc<Mutex<Vec<u8>>>);

impl Write for Buffer {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Buffer {
    type Writer = Buffer;
    fn make_writer(&'a self) -> Buffer {
        self.clone()
    }
}

impl Buffer {
    fn lines(&self) -> Vec<String> {
        let text = String::from_utf8(self.0.lock().unwrap().clone()).unwrap();
        text.lines().map(str::to_owned).collect()
    }
}

/// A plain-text `fmt` subscriber at `TRACE`, no colours, as this thread's default.
fn capture() -> (Buffer, DefaultGuard) {
    let buffer = Buffer::default();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .without_time()
        .with_writer(buffer.clone())
        .finish();
    (buffer.clone(), tracing::subscriber::set_default(subscriber))
}

const FORGED: &str = "\nWARN go_go_scope: forged";

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Every captured line is one event of the crate; none begins with the forged text.
fn assert_one_line_per_event(lines: &[String], events: &[&str]) {
    for line in lines {
        assert!(
            line.contains("go_go_scope"),
            "a line that is no event of the crate: {line:?}\nall lines: {lines:#?}"
        );
        assert!(!line.starts_with("WARN go_go_scope: forged"), "{line:?}");
    }
    for event in events {
        let matching: Vec<_> = lines.iter().filter(|l| l.contains(event)).collect();
        assert_eq!(matching.len(), 1, "{event:?} in {lines:#?}");
        assert!(
            matching[0].contains("\\n"),
            "the line break is written escaped: {:?}",
            matching[0]
        );
    }
}

#[test]
fn a_scope_name_with_a_line_break_stays_on_its_line() {
    let (buffer, _guard) = capture();
    runtime().block_on(async {
        let scope = Scope::builder()
            .name(format!("checkout{FORGED}"))
            .build()
            .unwrap();
        scope.spawn(std::future::pending::<()>());
        drop(scope);
        tokio::task::yield_now().await;
    });
    assert_one_line_per_event(&buffer.lines(), &["scope dropped without close()"]);
}

#[test]
fn error_texts_and_reasons_with_line_breaks_stay_on_their_lines() {
    let (buffer, _guard) = capture();
    runtime().block_on(async {
        let scope = Scope::builder()
            .name(format!("orders{FORGED}"))
            .hooks(Hooks::new().on_cancel(|_| panic!("hook{FORGED}")))
            .build()
            .unwrap();
        scope.defer(|| async { Err::<(), _>(io::Error::other(format!("disk{FORGED}"))) });
        let failing = scope.spawn(async {
            Err::<(), _>(Error::from_task_error(io::Error::other(format!(
                "bad input{FORGED}"
            ))))
        });
        let _ = failing.await;
        let _pending = scope.spawn(std::future::pending::<()>());
        scope.cancel(format!("shutdown{FORGED}"));
        let _ = scope.close().await;
    });
    let lines = buffer.lines();
    assert_one_line_per_event(
        &lines,
        &[
            "task failed",
            "scope cancelled",
            "a go-go-scope hook panicked",
            "a disposer failed",
        ],
    );
    // The error's sources are kept, each escaped too.
    let disposer = lines
        .iter()
        .find(|l| l.contains("a disposer failed"))
        .unwrap();
    assert!(
        disposer.contains("disk\\nWARN go_go_scope: forged"),
        "{disposer}"
    );
}
