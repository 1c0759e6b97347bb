//! Channels, broadcast, select and scoped streams (CHAN, BCAST, SEL, STREAM cases).

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use go_go_scope::{
    Broadcast, Channel, Error, Hooks, Lagged, Scope, ScopedStream, Select, TimeoutOrigin,
    TryRecvError, TrySendError,
};
use go_go_scope_tests::DropFlag;
use tokio::time::{Instant, sleep};

/// Polls `future` once, with the test task's waker.
async fn poll_once<F: std::future::Future + Unpin>(future: &mut F) -> std::task::Poll<F::Output> {
    std::future::poll_fn(|cx| std::task::Poll::Ready(std::pin::Pin::new(&mut *future).poll(cx)))
        .await
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

// ---------------------------------------------------------------- channel

// CHAN-01
#[tokio::test]
async fn values_come_out_in_the_order_they_went_in() {
    let s = Scope::new().unwrap();
    let ch = s.channel::<&str>(10);
    ch.send("hello").await.unwrap();
    ch.send("world").await.unwrap();
    assert_eq!(ch.recv().await, Some("hello"));
    assert_eq!(ch.recv().await, Some("world"));
    s.close().await.unwrap();
}

// CHAN-02
#[tokio::test]
async fn iterating_a_channel_ends_after_close() {
    let s = Scope::new().unwrap();
    let ch = s.channel::<i32>(5);
    let producer = ch.clone();
    let _producer = s.spawn(async move {
        for i in 1..=3 {
            producer.send(i).await.unwrap();
        }
        producer.close();
    });
    let all: Vec<i32> = ch.clone().collect().await;
    assert_eq!(all, [1, 2, 3]);
    s.close().await.unwrap();
}

// CHAN-03
#[tokio::test(start_paused = true)]
async fn a_full_buffer_makes_the_sender_wait_for_a_receive() {
    let s = Scope::new().unwrap();
    let ch = s.channel::<&str>(2);
    ch.send("a").await.unwrap();
    ch.send("b").await.unwrap();
    let third = {
        let ch = ch.clone();
        s.spawn(async move { ch.send("c").await })
    };
    sleep(ms(10)).await;
    assert!(!third.is_finished(), "the third send must wait for room");
    assert_eq!(ch.recv().await, Some("a"));
    assert!(third.await.1.unwrap().is_ok());
    assert_eq!(ch.len(), 2);
    s.close().await.unwrap();
}

// CHAN-04, CHAN-08
#[tokio::test]
async fn several_producers_one_consumer_every_value_once() {
    let s = Scope::new().unwrap();
    let ch = s.channel::<u32>(10);
    let producers: Vec<_> = (0..3)
        .map(|id| {
            let ch = ch.clone();
            s.spawn(async move {
                for i in 0..5 {
                    ch.send(id * 10 + i).await.unwrap();
                }
            })
        })
        .collect();
    let closer = ch.clone();
    let _closer = s.spawn(async move {
        for p in producers {
            assert!(p.await.0.is_none());
        }
        closer.close();
    });
    let consumer = {
        let ch = ch.clone();
        s.spawn(async move {
            let mut seen = Vec::new();
            let mut batch = Vec::new();
            while let Some(v) = ch.recv().await {
                batch.push(v);
                if batch.len() == 3 {
                    seen.append(&mut batch);
                }
            }
            seen.append(&mut batch);
            seen
        })
    };
    let (err, seen) = consumer.await;
    assert!(err.is_none());
    let seen = seen.unwrap();
    assert_eq!(seen.len(), 15);
    assert_eq!(seen.iter().collect::<HashSet<_>>().len(), 15);
    s.close().await.unwrap();
}

// CHAN-05, CHAN-14: a receive waiting when the scope closes ends with None, not an error.
#[tokio::test]
async fn a_pending_receive_ends_with_none_when_the_scope_closes() {
    let s = Scope::new().unwrap();
    let ch = s.channel::<u8>(5);
    let rx = ch.clone();
    let waiting = tokio::spawn(async move { rx.recv().await });
    tokio::task::yield_now().await;
    s.close().await.unwrap();
    assert_eq!(waiting.await.unwrap(), None);
}

// CHAN-06, A-13: the value sent after close comes back.
#[tokio::test]
async fn send_after_close_hands_the_value_back() {
    let ch = Channel::new(5);
    ch.send(String::from("before")).await.unwrap();
    assert!(ch.close());
    let err = ch.send(String::from("after")).await.unwrap_err();
    assert_eq!(err.into_inner(), "after");
    assert_eq!(ch.recv().await.as_deref(), Some("before"));
    assert_eq!(ch.recv().await, None);
}

// CHAN-07
#[tokio::test]
async fn len_and_capacity_track_the_buffer() {
    let ch = Channel::new(5);
    assert_eq!((ch.capacity(), ch.len()), (5, 0));
    assert!(ch.is_empty());
    ch.send(1).await.unwrap();
    assert_eq!(ch.len(), 1);
    ch.send(2).await.unwrap();
    assert_eq!(ch.len(), 2);
    ch.recv().await;
    assert_eq!(ch.len(), 1);
}

// CHAN-09
#[tokio::test]
async fn rendezvous_with_the_receiver_first() {
    let ch = Channel::new(0);
    let rx = ch.clone();
    let receiver = tokio::spawn(async move { rx.recv().await });
    tokio::task::yield_now().await;
    ch.send(5).await.unwrap();
    assert_eq!(receiver.await.unwrap(), Some(5));
    assert_eq!((ch.capacity(), ch.len()), (0, 0));
}

// CHAN-10, A-13: the sender arrives first; a later receive takes its value; the send completes
// only then.
#[tokio::test(start_paused = true)]
async fn rendezvous_with_the_sender_first_never_deadlocks() {
    let s = Scope::new().unwrap();
    let ch = s.channel::<u32>(0);
    let sender = {
        let ch = ch.clone();
        s.spawn(async move { ch.send(1).await })
    };
    sleep(ms(50)).await;
    assert!(
        !sender.is_finished(),
        "a rendezvous send waits for a receiver"
    );
    assert_eq!(ch.recv().await, Some(1));
    assert!(sender.await.1.unwrap().is_ok());
    s.close().await.unwrap();
}

// CHAN-10: a rendezvous sender still waiting when the channel closes gets its value back.
#[tokio::test(start_paused = true)]
async fn a_waiting_rendezvous_sender_gets_its_value_back_on_close() {
    let ch = Channel::new(0);
    let sender = {
        let ch = ch.clone();
        tokio::spawn(async move { ch.send(String::from("mine")).await })
    };
    sleep(ms(10)).await;
    ch.close();
    assert_eq!(sender.await.unwrap().unwrap_err().into_inner(), "mine");
    assert_eq!(ch.recv().await, None);
}

// CHAN-11, A-13: senders blocked on a full buffer get their values back on close; the
// buffered values are still received.
#[tokio::test(start_paused = true)]
async fn blocked_senders_get_their_values_back_and_the_buffer_survives_close() {
    let ch = Channel::new(1);
    ch.send(0).await.unwrap();
    let blocked: Vec<_> = (1..=3)
        .map(|i| {
            let ch = ch.clone();
            tokio::spawn(async move { ch.send(i).await })
        })
        .collect();
    sleep(ms(10)).await;
    ch.close();
    let mut returned = Vec::new();
    for b in blocked {
        returned.push(b.await.unwrap().unwrap_err().into_inner());
    }
    returned.sort();
    assert_eq!(returned, [1, 2, 3]);
    assert_eq!(ch.recv().await, Some(0));
    assert_eq!(ch.recv().await, None);
}

// CHAN-11: the same when a receive frees room right after the close, before the blocked
// sender ran again: the sender still gets its value back, and it is not received.
#[tokio::test]
async fn a_receive_racing_a_close_does_not_take_a_blocked_senders_value() {
    let ch = Channel::new(1);
    ch.send('a').await.unwrap();
    let mut blocked = Box::pin(ch.send('b'));
    assert!(poll_once(&mut blocked).await.is_pending());
    ch.close();
    assert_eq!(ch.recv().await, Some('a'));
    assert_eq!(ch.recv().await, None);
    assert_eq!(blocked.await.unwrap_err().into_inner(), 'b');
}

// CHAN-12 (decision A-13): cancelling the scope does not make buffered values unreachable;
// the channel closes with the scope's close and its values are still received.
#[tokio::test]
async fn cancellation_keeps_buffered_values_reachable() {
    let s = Scope::new().unwrap();
    let ch = s.channel::<u8>(4);
    ch.send(1).await.unwrap();
    s.cancel("stop");
    assert!(!ch.is_closed());
    assert_eq!(ch.len(), 1);
    s.close().await.unwrap();
    assert!(ch.is_closed());
    assert_eq!(ch.recv().await, Some(1));
    assert_eq!(ch.recv().await, None);
}

// CHAN-13, CHAN-14
#[tokio::test]
async fn a_closed_scopes_channel_refuses_sends_and_close_is_idempotent() {
    let s = Scope::new().unwrap();
    let ch = s.channel::<u8>(1);
    s.close().await.unwrap();
    assert!(matches!(ch.try_send(1), Err(TrySendError::Closed(1))));
    assert_eq!(ch.send(2).await.unwrap_err().into_inner(), 2);
    assert_eq!(ch.try_recv(), Err(TryRecvError::Closed));
    assert!(!ch.close());
    assert!(ch.is_closed());
    // A channel made on a closed scope starts closed.
    let late = s.channel::<u8>(1);
    assert!(late.is_closed());
}

// CHAN-15: `None` is a value.
#[tokio::test]
async fn none_values_travel_and_only_close_ends_iteration() {
    let ch = Channel::new(3);
    for v in [Some(1), None, Some(3)] {
        ch.send(v).await.unwrap();
    }
    ch.close();
    let all: Vec<Option<i32>> = ch.collect().await;
    assert_eq!(all, [Some(1), None, Some(3)]);
}

// CHAN-16, A-07: a scope's channel is a registered resource, disposed (and counted) at close.
#[tokio::test]
async fn a_scope_channel_is_a_counted_disposable() {
    let disposed = Arc::new(AtomicUsize::new(0));
    let d = disposed.clone();
    let s = Scope::builder()
        .metrics(true)
        .hooks(Hooks::new().on_dispose(move |_, _| {
            d.fetch_add(1, Ordering::SeqCst);
        }))
        .build()
        .unwrap();
    let _ch = s.channel::<u8>(1);
    s.close().await.unwrap();
    let m = s.metrics().unwrap();
    assert_eq!((m.resources_registered, m.resources_disposed), (1, 1));
    assert_eq!(disposed.load(Ordering::SeqCst), 1);
}

// A dropped send future is cancel-safe: its value is never received later.
#[tokio::test]
async fn a_dropped_send_never_delivers_later() {
    for capacity in [0, 1] {
        let ch = Channel::new(capacity);
        if capacity == 1 {
            ch.send(0).await.unwrap();
        }
        {
            let mut send = Box::pin(ch.send(99));
            assert!(poll_once(&mut send).await.is_pending());
        }
        if capacity == 1 {
            assert_eq!(ch.recv().await, Some(0));
        }
        assert_eq!(ch.try_recv(), Err(TryRecvError::Empty));
    }
}

// A dropped receive takes nothing: the value goes to the next receiver.
#[tokio::test]
async fn a_dropped_receive_takes_nothing() {
    let ch = Channel::new(0);
    let mut recv = Box::pin(ch.recv());
    assert!(poll_once(&mut recv).await.is_pending());
    // A receiver is waiting, so a rendezvous send goes through without waiting...
    assert!(ch.try_send(7).is_ok());
    // ...and the receive is dropped before it ran again: the value stays in the channel.
    drop(recv);
    assert_eq!(ch.recv().await, Some(7));
}

// DL-03, A-18: channel waits feed the deadlock detector.
#[tokio::test(start_paused = true)]
async fn channel_waits_are_reported_to_the_deadlock_detector() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = seen.clone();
    let s = Scope::builder()
        .deadlock_detection(ms(20), move |waiting| {
            for w in waiting {
                sink.lock().unwrap().push(w.resource);
            }
        })
        .build()
        .unwrap();
    let empty = s.channel::<u8>(1);
    let full = s.channel::<u8>(1);
    full.send(1).await.unwrap();
    let (e, f) = (empty.clone(), full.clone());
    let _rx = s.spawn(async move { e.recv().await });
    let _tx = s.spawn(async move { f.send(2).await });
    sleep(ms(60)).await;
    let seen: HashSet<&str> = seen.lock().unwrap().iter().copied().collect();
    assert!(seen.contains("channel receive"), "{seen:?}");
    assert!(seen.contains("channel send"), "{seen:?}");
    s.close().await.unwrap();
}

// The fast path registers nothing: a send that does not wait is not a wait.
#[tokio::test(start_paused = true)]
async fn sends_that_do_not_wait_are_not_reported() {
    let reports = Arc::new(AtomicUsize::new(0));
    let r = reports.clone();
    let s = Scope::builder()
        .deadlock_detection(ms(20), move |_| {
            r.fetch_add(1, Ordering::SeqCst);
        })
        .build()
        .unwrap();
    let ch = s.channel::<u8>(4);
    let task = {
        let ch = ch.clone();
        s.spawn(async move {
            ch.send(1).await.unwrap();
            ch.recv().await
        })
    };
    assert_eq!(task.await.1.unwrap(), Some(1));
    sleep(ms(100)).await;
    assert_eq!(reports.load(Ordering::SeqCst), 0);
    s.close().await.unwrap();
}

#[tokio::test]
async fn send_error_converts_into_the_crate_error() {
    let ch = Channel::new(1);
    ch.close();
    let err: Error = ch.send(1).await.unwrap_err().into();
    assert!(matches!(err, Error::ChannelClosed));
}

// ---------------------------------------------------------------- broadcast

// BCAST-01
#[tokio::test]
async fn every_subscriber_sees_every_value() {
    let s = Scope::new().unwrap();
    let b = s.broadcast::<u32>();
    let listeners: Vec<_> = (0..2)
        .map(|_| {
            let mut sub = b.subscribe().unwrap();
            s.spawn(async move {
                let mut got = Vec::new();
                while let Some(v) = sub.recv().await {
                    got.push(v.unwrap());
                }
                got
            })
        })
        .collect();
    for i in 1..=3 {
        assert_eq!(b.send(i).unwrap(), 2); // how many got it
    }
    b.close();
    for l in listeners {
        assert_eq!(l.await.1.unwrap(), [1, 2, 3]);
    }
    s.close().await.unwrap();
}

// BCAST-02
#[tokio::test]
async fn a_late_subscriber_misses_earlier_values() {
    let b = Broadcast::new(8).unwrap();
    let first = b.subscribe().unwrap();
    b.send(1).unwrap();
    let second = b.subscribe().unwrap();
    b.send(2).unwrap();
    b.send(3).unwrap();
    b.close();
    let a: Vec<_> = first.map(Result::unwrap).collect().await;
    let c: Vec<_> = second.map(Result::unwrap).collect().await;
    assert_eq!(a, [1, 2, 3]);
    assert_eq!(c, [2, 3]);
}

// BCAST-03, BCAST-04, A-32
#[tokio::test]
async fn broadcast_send_counts_and_closed_refusals() {
    let b = Broadcast::new(4).unwrap();
    assert_eq!(b.send("x").unwrap(), 0);
    b.close();
    assert!(b.is_closed());
    assert_eq!(b.send("y").unwrap_err().into_inner(), "y");
    assert!(matches!(b.subscribe(), Err(Error::ChannelClosed)));
}

// BCAST-05
#[tokio::test]
async fn dropping_a_subscriber_unsubscribes_it() {
    let b = Broadcast::new(4).unwrap();
    let sub = b.subscribe().unwrap();
    assert_eq!(b.subscriber_count(), 1);
    drop(sub);
    assert_eq!(b.subscriber_count(), 0);
    assert_eq!(b.send(1).unwrap(), 0);
}

// BCAST-06: queued values are drained before the end; a waiting subscriber ends at close.
#[tokio::test]
async fn close_drains_then_ends_and_wakes_waiting_subscribers() {
    let b = Broadcast::new(4).unwrap();
    let mut waiting = b.subscribe().unwrap();
    let waiter = tokio::spawn(async move { waiting.recv().await });
    tokio::task::yield_now().await;
    let mut queued = b.subscribe().unwrap();
    b.send(1).unwrap();
    b.close();
    assert_eq!(waiter.await.unwrap(), Some(Ok(1)));
    assert_eq!(queued.recv().await, Some(Ok(1)));
    assert_eq!(queued.recv().await, None);
    assert_eq!(queued.recv().await, None);
}

// BCAST-07 (decision): the scope's close closes its broadcast; queued values are still
// delivered.
#[tokio::test]
async fn a_scope_broadcast_closes_with_the_scope() {
    let s = Scope::new().unwrap();
    let b = s.broadcast::<u8>();
    let mut sub = b.subscribe().unwrap();
    b.send(9).unwrap();
    s.close().await.unwrap();
    assert!(b.is_closed());
    assert_eq!(sub.recv().await, Some(Ok(9)));
    assert_eq!(sub.recv().await, None);
}

// BCAST-08 (decision): memory is bounded; a slow subscriber learns how much it missed and
// does not slow the others.
#[tokio::test]
async fn a_slow_subscriber_lags_instead_of_growing_memory() {
    let b = Broadcast::new(4).unwrap();
    let mut slow = b.subscribe().unwrap();
    let mut fast = b.subscribe().unwrap();
    for i in 0..10 {
        b.send(i).unwrap();
        assert_eq!(fast.recv().await, Some(Ok(i)));
    }
    assert_eq!(slow.recv().await, Some(Err(Lagged(6))));
    let mut got = Vec::new();
    for _ in 0..4 {
        got.push(slow.recv().await.unwrap().unwrap());
    }
    assert_eq!(got, [6, 7, 8, 9]);
    assert!(Broadcast::<u8>::new(0).is_err());
}

// BCAST-09
#[tokio::test]
async fn broadcast_delivers_none_values() {
    let b = Broadcast::new(4).unwrap();
    let mut sub = b.subscribe().unwrap();
    b.send(None::<u8>).unwrap();
    assert_eq!(sub.recv().await, Some(Ok(None)));
}

#[tokio::test(start_paused = true)]
async fn broadcast_waits_feed_the_deadlock_detector() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = seen.clone();
    let s = Scope::builder()
        .deadlock_detection(ms(20), move |w| sink.lock().unwrap().push(w[0].resource))
        .build()
        .unwrap();
    let b = s.broadcast::<u8>();
    let mut sub = b.subscribe().unwrap();
    let _t = s.spawn(async move { sub.recv().await });
    sleep(ms(50)).await;
    assert_eq!(seen.lock().unwrap().first(), Some(&"broadcast receive"));
    s.close().await.unwrap();
}

// ---------------------------------------------------------------- select

#[derive(Debug, PartialEq)]
enum Msg {
    Text(String),
    Number(i32),
}

// SEL-01
#[tokio::test]
async fn select_takes_the_ready_channel() {
    let s = Scope::new().unwrap();
    let texts = s.channel::<String>(10);
    let numbers = s.channel::<i32>(10);
    numbers.send(42).await.unwrap();
    let got = Select::new()
        .recv(&texts, Msg::Text)
        .recv(&numbers, Msg::Number)
        .await
        .unwrap();
    assert_eq!(got, Msg::Number(42));
    s.close().await.unwrap();
}

// SEL-02
#[tokio::test]
async fn select_without_branches_is_an_invalid_option() {
    let err = Select::<u8>::new().await.unwrap_err();
    assert!(matches!(
        err,
        Error::InvalidOption {
            option: "select",
            ..
        }
    ));
}

// SEL-03
#[tokio::test]
async fn select_on_closed_channels_reports_channel_closed() {
    let a = Channel::<u8>::new(1);
    let b = Channel::<u8>::new(1);
    a.close();
    b.close();
    let err = Select::new()
        .recv(&a, |v| v)
        .recv(&b, |v| v)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::ChannelClosed));
    assert!(err.to_string().contains("closed"));
}

// SEL-05, A-14
#[tokio::test(start_paused = true)]
async fn select_timeout_is_a_typed_timeout() {
    let a = Channel::<u8>::new(1);
    let start = Instant::now();
    let err = Select::new()
        .recv(&a, |v| v)
        .timeout(ms(30))
        .await
        .unwrap_err();
    assert_eq!(start.elapsed(), ms(30));
    match err {
        Error::Timeout {
            after,
            scope_or_task: TimeoutOrigin::Operation("select"),
        } => assert_eq!(after, ms(30)),
        other => panic!("expected a select timeout, got {other:?}"),
    }
    // The timeout took nothing: a value sent now is still there.
    a.send(1).await.unwrap();
    assert_eq!(a.len(), 1);
}

// SEL-06
#[tokio::test(start_paused = true)]
async fn select_waits_on_rendezvous_channels_until_one_is_sent_to() {
    let s = Scope::new().unwrap();
    let texts = s.channel::<String>(0);
    let numbers = s.channel::<i32>(0);
    let sender = texts.clone();
    let _send = s.spawn(async move {
        sleep(ms(100)).await;
        sender.send("hello".into()).await
    });
    let got = Select::new()
        .recv(&texts, Msg::Text)
        .recv(&numbers, Msg::Number)
        .await
        .unwrap();
    assert_eq!(got, Msg::Text("hello".into()));
    s.close().await.unwrap();
}

// SEL-07, A-14: a closed channel is skipped; select keeps waiting on the open one.
#[tokio::test(start_paused = true)]
async fn select_skips_closed_channels_and_waits_on_open_ones() {
    let closed = Channel::<i32>::new(1);
    closed.close();
    let open = Channel::<i32>::new(1);
    let sender = open.clone();
    tokio::spawn(async move {
        sleep(ms(50)).await;
        sender.send(5).await
    });
    let got = Select::new()
        .recv(&closed, |v| v)
        .recv(&open, |v| v * 10)
        .timeout(ms(500))
        .await
        .unwrap();
    assert_eq!(got, 50);
}

// SEL-08, SEL-09, A-14: exactly one value is taken; the losing channels keep theirs, and a
// send after the select is not swallowed.
#[tokio::test]
async fn select_takes_exactly_one_value() {
    let a = Channel::new(2);
    let b = Channel::new(2);
    a.send('a').await.unwrap();
    b.send('b').await.unwrap();
    let got = Select::new().recv(&a, |v| v).recv(&b, |v| v).await.unwrap();
    assert_eq!(a.len() + b.len(), 1, "one value taken, one left");
    let left = if got == 'a' { &b } else { &a };
    assert_eq!(
        left.try_recv().ok(),
        Some(if got == 'a' { 'b' } else { 'a' })
    );

    let lost_race = Channel::<&str>::new(1);
    let winner = Channel::<&str>::new(1);
    winner.send("w").await.unwrap();
    Select::new()
        .recv(&lost_race, |v| v)
        .recv(&winner, |v| v)
        .await
        .unwrap();
    lost_race.send("x").await.unwrap();
    assert_eq!(lost_race.len(), 1);
    assert_eq!(lost_race.recv().await, Some("x"));
}

// among ready channels the choice is random, so neither starves.
#[tokio::test]
async fn select_is_fair_among_ready_channels() {
    let a = Channel::new(1);
    let b = Channel::new(1);
    let (mut from_a, mut from_b) = (0, 0);
    for _ in 0..200 {
        if a.is_empty() {
            a.send('a').await.unwrap();
        }
        if b.is_empty() {
            b.send('b').await.unwrap();
        }
        match Select::new().recv(&a, |v| v).recv(&b, |v| v).await.unwrap() {
            'a' => from_a += 1,
            _ => from_b += 1,
        }
    }
    assert!(from_a > 20 && from_b > 20, "a: {from_a}, b: {from_b}");
}

// SEL-10: the channels close with their scope while a select outside it waits.
#[tokio::test]
async fn select_reports_closed_when_the_scope_closes_under_it() {
    let s = Scope::new().unwrap();
    let a = s.channel::<u8>(1);
    let b = s.channel::<u8>(0);
    let waiting = tokio::spawn(async move { Select::new().recv(&a, |v| v).recv(&b, |v| v).await });
    tokio::task::yield_now().await;
    s.close().await.unwrap();
    assert!(matches!(waiting.await.unwrap(), Err(Error::ChannelClosed)));
}

// A rendezvous sender waiting on a channel completes when a select takes its value.
#[tokio::test]
async fn select_completes_a_waiting_rendezvous_sender() {
    let ch = Channel::new(0);
    let other = Channel::<u32>::new(0);
    let sender = {
        let ch = ch.clone();
        tokio::spawn(async move { ch.send(3_u32).await })
    };
    tokio::task::yield_now().await;
    let got = Select::new()
        .recv(&other, |v| v)
        .recv(&ch, |v| v)
        .await
        .unwrap();
    assert_eq!(got, 3);
    assert!(sender.await.unwrap().is_ok());
}

#[tokio::test]
async fn select_with_a_zero_timeout_checks_without_waiting() {
    let ch = Channel::new(1);
    ch.send(1).await.unwrap();
    assert_eq!(
        Select::new()
            .recv(&ch, |v| v)
            .timeout(Duration::ZERO)
            .await
            .unwrap(),
        1
    );
    assert!(
        Select::new()
            .recv(&ch, |v: i32| v)
            .timeout(Duration::ZERO)
            .await
            .is_err()
    );
}

// ---------------------------------------------------------------- stream

struct Ticks {
    every: Duration,
    upto: u32,
    pulled: Arc<AtomicUsize>,
    _dropped: DropFlag,
}

fn ticks(
    every: Duration,
    upto: u32,
) -> (
    impl futures::Stream<Item = u32>,
    Arc<AtomicUsize>,
    Arc<std::sync::atomic::AtomicBool>,
) {
    let (flag, dropped) = DropFlag::new();
    let pulled = Arc::new(AtomicUsize::new(0));
    let state = Ticks {
        every,
        upto,
        pulled: pulled.clone(),
        _dropped: flag,
    };
    let stream = futures::stream::unfold((state, 1), |(state, n)| async move {
        state.pulled.fetch_add(1, Ordering::SeqCst);
        if n > state.upto {
            return None;
        }
        sleep(state.every).await;
        Some((n, (state, n + 1)))
    });
    (stream, pulled, dropped)
}

// STREAM-01, STREAM-04
#[tokio::test]
async fn a_scoped_stream_yields_every_item() {
    let s = Scope::new().unwrap();
    let items: Vec<_> = s
        .stream(futures::stream::iter(["a", "b", "c"]))
        .collect()
        .await;
    assert_eq!(items, ["a", "b", "c"]);
    let token = go_go_scope::CancellationToken::new();
    let numbers: Vec<_> = ScopedStream::new(futures::stream::iter(1..=3), token)
        .collect()
        .await;
    assert_eq!(numbers, [1, 2, 3]);
    s.close().await.unwrap();
}

// STREAM-02
#[tokio::test(start_paused = true)]
async fn a_cancelled_scope_ends_its_stream_with_the_reason() {
    let s = Scope::new().unwrap();
    let (source, _, _) = ticks(ms(20), 10);
    let mut stream = s.stream(source);
    let canceller = s.clone();
    tokio::spawn(async move {
        sleep(ms(50)).await;
        canceller.cancel("cancelled");
    });
    let mut seen = Vec::new();
    while let Some(n) = stream.next().await {
        seen.push(n);
    }
    assert_eq!(seen, [1, 2]);
    let err = stream.cancellation_error().unwrap();
    assert!(matches!(err, Error::Cancelled { ref reason } if reason == "cancelled"));
    s.close().await.unwrap();
}

// STREAM-03
#[tokio::test]
async fn leaving_a_stream_early_runs_the_source_cleanup() {
    let s = Scope::new().unwrap();
    let (source, _, dropped) = ticks(Duration::ZERO, 10);
    {
        let mut stream = s.stream(source);
        while let Some(n) = stream.next().await {
            if n == 2 {
                break;
            }
        }
    }
    assert!(dropped.load(Ordering::SeqCst));
    s.close().await.unwrap();
}

// STREAM-05, A-25: a pull in progress is interrupted by the cancellation.
#[tokio::test(start_paused = true)]
async fn cancellation_interrupts_a_pending_pull() {
    let s = Scope::new().unwrap();
    let (source, _, dropped) = ticks(ms(50), 10);
    let mut stream = s.stream(source);
    let canceller = s.clone();
    tokio::spawn(async move {
        sleep(ms(10)).await;
        canceller.cancel("now");
    });
    let start = Instant::now();
    assert_eq!(stream.next().await, None);
    assert_eq!(
        start.elapsed(),
        ms(10),
        "ended when cancelled, not when the pull finished"
    );
    // STREAM-08: the source was dropped (its cleanup ran) at the cancellation.
    assert!(dropped.load(Ordering::SeqCst));
    assert!(stream.cancellation_error().is_some());
    s.close().await.unwrap();
}

// STREAM-06
#[tokio::test]
async fn an_already_cancelled_scope_ends_the_stream_before_any_pull() {
    let s = Scope::new().unwrap();
    s.cancel("pre");
    let (source, pulled, _) = ticks(Duration::ZERO, 3);
    let mut stream = s.stream(source);
    assert_eq!(stream.next().await, None);
    assert_eq!(pulled.load(Ordering::SeqCst), 0);
    assert_eq!(
        stream.cancellation_error().unwrap().to_string(),
        "cancelled: pre"
    );
    s.close().await.unwrap();
}

// STREAM-07
#[tokio::test(start_paused = true)]
async fn a_scope_timeout_ends_the_stream() {
    let s = Scope::builder().timeout(ms(15)).build().unwrap();
    let (source, _, _) = ticks(ms(10), 10);
    let mut stream = s.stream(source);
    let mut seen = Vec::new();
    while let Some(n) = stream.next().await {
        seen.push(n);
    }
    assert_eq!(seen, [1]);
    assert!(stream.cancellation_error().unwrap().is_timeout());
    s.close().await.unwrap();
}

// A stream that ends on its own reports no cancellation.
#[tokio::test]
async fn a_stream_that_ends_naturally_has_no_cancellation_error() {
    let s = Scope::new().unwrap();
    let mut stream = s.stream(futures::stream::iter([1]));
    assert_eq!(stream.next().await, Some(1));
    assert_eq!(stream.next().await, None);
    assert!(stream.cancellation_error().is_none());
    s.close().await.unwrap();
}
