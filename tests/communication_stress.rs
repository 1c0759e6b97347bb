//! The channel's no-loss guarantee under pressure: every value sent is received exactly once
//! or handed back to its sender.
//!
//! Two tests:
//! - an exhaustive one: every sequence (up to a length) of sends, receives, closes and
//!   cancellations on small channels, driven by hand on one thread so each interleaving of
//!   the close protocol is reached deterministically;
//! - a randomized one: many producers and consumers on a multi-thread runtime with closes at
//!   random moments. Seeded: the seed is printed, and `GO_GO_SCOPE_STRESS_SEED` replays one;
//!   `GO_GO_SCOPE_STRESS_ROUNDS` sets how many rounds run.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use go_go_scope::{Channel, SendError, TryRecvError};

type SendFuture<'a> = Pin<Box<dyn Future<Output = Result<(), SendError<u32>>> + 'a>>;
type RecvFuture<'a> = Pin<Box<dyn Future<Output = Option<u32>> + 'a>>;

fn poll_once<F: Future + ?Sized>(future: Pin<&mut F>) -> Poll<F::Output> {
    future.poll(&mut Context::from_waker(Waker::noop()))
}

/// What happened to each value.
#[derive(Default, Debug)]
struct Ledger {
    received: HashMap<u32, usize>,
    sent_ok: Vec<u32>,
    handed_back: Vec<u32>,
    abandoned: Vec<u32>,
}

impl Ledger {
    fn check(&self, values: u32, trace: &str) {
        for (v, n) in &self.received {
            assert!(*n == 1, "value {v} received {n} times: {trace}");
        }
        for v in &self.sent_ok {
            assert!(
                self.received.contains_key(v),
                "value {v} was sent but never received: {trace}"
            );
        }
        for v in &self.handed_back {
            assert!(
                !self.received.contains_key(v),
                "value {v} was handed back and received: {trace}"
            );
        }
        let settled = self.sent_ok.len() + self.handed_back.len() + self.abandoned.len();
        assert_eq!(settled, values as usize, "a send never settled: {trace}");
    }
}

#[derive(Clone, Copy, Debug)]
enum Op {
    /// Start a send of the next value and poll it once.
    Send,
    /// Poll every pending send and receive once.
    PollAll,
    /// `try_recv`.
    TryRecv,
    /// Start a receive and poll it once.
    Recv,
    Close,
    /// Drop the oldest pending send.
    DropSend,
    /// Drop the oldest pending receive.
    DropRecv,
}

const OPS: [Op; 7] = [
    Op::Send,
    Op::PollAll,
    Op::TryRecv,
    Op::Recv,
    Op::Close,
    Op::DropSend,
    Op::DropRecv,
];

fn run_sequence(capacity: usize, ops: &[Op]) {
    let trace = format!("capacity {capacity}, ops {ops:?}");
    let ch = Channel::<u32>::new(capacity);
    let mut ledger = Ledger::default();
    let mut sends: Vec<(u32, SendFuture<'_>)> = Vec::new();
    let mut recvs: Vec<RecvFuture<'_>> = Vec::new();
    let mut next = 0;

    let poll_all = |sends: &mut Vec<(u32, SendFuture<'_>)>,
                    recvs: &mut Vec<RecvFuture<'_>>,
                    ledger: &mut Ledger| {
        sends.retain_mut(|(v, f)| match poll_once(f.as_mut()) {
            Poll::Ready(Ok(())) => {
                ledger.sent_ok.push(*v);
                false
            }
            Poll::Ready(Err(back)) => {
                assert_eq!(back.into_inner(), *v, "handed back the wrong value");
                ledger.handed_back.push(*v);
                false
            }
            Poll::Pending => true,
        });
        recvs.retain_mut(|f| match poll_once(f.as_mut()) {
            Poll::Ready(Some(v)) => {
                *ledger.received.entry(v).or_default() += 1;
                false
            }
            Poll::Ready(None) => false,
            Poll::Pending => true,
        });
    };

    for op in ops {
        match op {
            Op::Send => {
                let v = next;
                next += 1;
                sends.push((v, Box::pin(ch.send(v))));
                poll_all(&mut sends, &mut recvs, &mut ledger);
            }
            Op::PollAll => poll_all(&mut sends, &mut recvs, &mut ledger),
            Op::TryRecv => {
                if let Ok(v) = ch.try_recv() {
                    *ledger.received.entry(v).or_default() += 1;
                }
            }
            Op::Recv => {
                recvs.push(Box::pin(ch.recv()));
                poll_all(&mut sends, &mut recvs, &mut ledger);
            }
            Op::Close => {
                ch.close();
            }
            Op::DropSend => {
                if !sends.is_empty() {
                    let (v, _) = sends.remove(0);
                    ledger.abandoned.push(v);
                }
            }
            Op::DropRecv => {
                if !recvs.is_empty() {
                    drop(recvs.remove(0));
                }
            }
        }
    }
    // Close, let everything settle, then drain.
    ch.close();
    for _ in 0..3 {
        poll_all(&mut sends, &mut recvs, &mut ledger);
    }
    assert!(
        sends.is_empty(),
        "a send is still pending after close: {trace}"
    );
    assert!(
        recvs.is_empty(),
        "a receive is still pending after close: {trace}"
    );
    loop {
        match ch.try_recv() {
            Ok(v) => *ledger.received.entry(v).or_default() += 1,
            Err(TryRecvError::Closed) => break,
            Err(TryRecvError::Empty) => panic!("a closed channel reported Empty: {trace}"),
        }
    }
    // An abandoned send may have been received before it was dropped, but only once.
    ledger.check(next, &trace);
}

#[test]
fn every_short_sequence_of_operations_keeps_every_value() {
    const LENGTH: usize = 6;
    let mut sequences = 0;
    for capacity in [0, 1, 2] {
        let mut ops = [Op::Send; LENGTH];
        for code in 0..OPS.len().pow(LENGTH as u32) {
            let mut rest = code;
            for op in ops.iter_mut() {
                *op = OPS[rest % OPS.len()];
                rest /= OPS.len();
            }
            run_sequence(capacity, &ops);
            sequences += 1;
        }
    }
    assert_eq!(sequences, 3 * 7_usize.pow(LENGTH as u32));
}

/// xorshift64*: enough randomness for scheduling choices, reproducible from its seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn env_number(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_producers_and_consumers_with_random_closes_lose_nothing() {
    let seed = env_number("GO_GO_SCOPE_STRESS_SEED").unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64)
            | 1
    });
    let rounds = env_number("GO_GO_SCOPE_STRESS_ROUNDS").unwrap_or(30);
    // Printed on failure (the harness shows a failing test's output).
    println!("stress seed: {seed} (replay with GO_GO_SCOPE_STRESS_SEED={seed})");
    let mut rng = Rng(seed);
    for round in 0..rounds {
        let capacity = [0, 1, 2, 16][rng.below(4) as usize];
        let producers = 1 + rng.below(6) as u32;
        let consumers = 1 + rng.below(4);
        let per_producer = 20 + rng.below(200) as u32;
        let close_after = rng.below(400);
        let context = format!(
            "seed {seed}, round {round}: capacity {capacity}, {producers} producers x {per_producer}, {consumers} consumers, close after {close_after} yields"
        );
        let ledger = Arc::new(Mutex::new(Ledger::default()));
        let ch = Channel::<u32>::new(capacity);
        let mut handles = Vec::new();
        for p in 0..producers {
            let (ch, ledger) = (ch.clone(), ledger.clone());
            let mut rng = Rng(rng.next() | 1);
            handles.push(tokio::spawn(async move {
                for i in 0..per_producer {
                    let v = p * 100_000 + i;
                    let abandon = rng.below(10) == 0;
                    if abandon {
                        // Poll the send once, give up if it has to wait.
                        let mut send = Box::pin(ch.send(v));
                        let polled =
                            std::future::poll_fn(|cx| Poll::Ready(send.as_mut().poll(cx))).await;
                        let mut ledger = ledger.lock().unwrap();
                        match polled {
                            Poll::Ready(Ok(())) => ledger.sent_ok.push(v),
                            Poll::Ready(Err(back)) => ledger.handed_back.push(back.into_inner()),
                            Poll::Pending => ledger.abandoned.push(v),
                        }
                        continue;
                    }
                    match ch.send(v).await {
                        Ok(()) => ledger.lock().unwrap().sent_ok.push(v),
                        Err(back) => ledger.lock().unwrap().handed_back.push(back.into_inner()),
                    }
                }
            }));
        }
        for _ in 0..consumers {
            let (ch, ledger) = (ch.clone(), ledger.clone());
            let mut rng = Rng(rng.next() | 1);
            handles.push(tokio::spawn(async move {
                loop {
                    let got = match rng.below(3) {
                        0 => match ch.try_recv() {
                            Ok(v) => Some(v),
                            Err(TryRecvError::Empty) => {
                                tokio::task::yield_now().await;
                                continue;
                            }
                            Err(TryRecvError::Closed) => None,
                        },
                        1 => futures::StreamExt::next(&mut ch.clone()).await,
                        _ => ch.recv().await,
                    };
                    match got {
                        Some(v) => *ledger.lock().unwrap().received.entry(v).or_default() += 1,
                        None => break,
                    }
                }
            }));
        }
        let closer = ch.clone();
        handles.push(tokio::spawn(async move {
            for _ in 0..close_after {
                tokio::task::yield_now().await;
            }
            closer.close();
        }));
        for h in handles {
            h.await.expect(&context);
        }
        let ledger = ledger.lock().unwrap();
        ledger.check(producers * per_producer, &context);
    }
}
