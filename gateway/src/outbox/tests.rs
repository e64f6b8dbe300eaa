use super::*;

fn f(s: &'static str) -> Frame {
    Frame::from_static(s)
}

fn drain(rx: &Receiver) -> Vec<Frame> {
    std::iter::from_fn(|| rx.try_recv()).collect()
}

#[tokio::test]
async fn frames_come_out_in_order_until_the_connection_is_closed() {
    let (tx, rx) = outbox(4);
    let other = tx.clone();
    tx.try_send(f("a")).unwrap();
    other.try_send(f("b")).unwrap();
    assert_eq!(rx.next().await, Next::Write(f("a")));
    other.close((1000, "bye"));
    assert_eq!(
        rx.next().await,
        Next::End,
        "ending comes before what is queued"
    );
    assert_eq!(drain(&rx), ["b"], "what was queued is left to write");
    tx.close((4000, "later reason"));
    let ending = rx.ending().unwrap();
    assert_eq!(
        ending.reason,
        (1000, "bye"),
        "the first reason given is sent"
    );
    assert!(!ending.abort);
}

#[tokio::test]
async fn a_full_queue_refuses_events_but_takes_the_connections_own_replies() {
    let (tx, rx) = outbox(2);
    tx.try_send(f("1")).unwrap();
    tx.try_send(f("2")).unwrap();
    assert_eq!(tx.try_send(f("3")), Err(Refused::Full));
    assert_eq!(tx.capacity(), 0);
    assert!(!rx.has_room());
    tx.reply(f("reply")).unwrap();
    assert_eq!(drain(&rx), ["1", "2", "reply"]);
    assert_eq!(tx.capacity(), 2);
    assert!(rx.has_room());
}

#[tokio::test]
async fn the_reader_waits_for_a_frame_and_senders_learn_when_it_is_gone() {
    let (tx, rx) = outbox(2);
    let reader = tokio::spawn(async move { (rx.next().await, rx) });
    tokio::task::yield_now().await;
    tx.try_send(f("late")).unwrap();
    let (next, rx) = reader.await.unwrap();
    assert_eq!(next, Next::Write(f("late")));
    drop(rx);
    assert_eq!(tx.try_send(f("x")), Err(Refused::Closed));
    assert_eq!(tx.reply(f("x")), Err(Refused::Closed));
}

#[tokio::test]
async fn an_abort_drops_what_is_queued_and_wakes_a_reader_in_the_middle_of_a_write() {
    let (tx, rx) = outbox(8);
    tx.try_send(f("queued")).unwrap();
    let writing = tokio::spawn(async move {
        std::future::poll_fn(|cx| rx.poll_aborted(cx)).await;
        rx
    });
    tokio::task::yield_now().await;
    tx.abort((4008, "too slow"));
    let rx = writing.await.unwrap();
    assert_eq!(rx.next().await, Next::End);
    assert!(drain(&rx).is_empty());
    assert!(rx.ending().unwrap().abort);
    assert_eq!(tx.try_send(f("x")), Err(Refused::Closed));
    tx.close((1000, "a later close does not undo the abort"));
    assert_eq!(rx.ending().unwrap().reason, (4008, "too slow"));
    assert!(rx.ending().unwrap().abort);
}

#[test]
fn a_drained_queue_gives_its_buffer_back() {
    let (tx, rx) = outbox(64);
    for _ in 0..40 {
        tx.try_send(f("e")).unwrap();
    }
    while rx.try_recv().is_some() {}
    assert_eq!(rx.shared.state().frames.capacity(), 0);
}

#[test]
fn a_persisted_event_that_beats_its_pub_ack_waits_for_the_ack() {
    let (tx, rx) = outbox(16);
    let temp_id = Uuid::new_v4();
    tx.expect_ack(temp_id);
    tx.offer(&f("persisted"), Some(temp_id)).unwrap();
    tx.offer(&f("later event"), None).unwrap();
    assert!(drain(&rx).is_empty(), "held until the ack is queued");
    // The session queues the ack, then settles.
    tx.reply(f("ack")).unwrap();
    tx.settle(temp_id).unwrap();
    assert_eq!(drain(&rx), ["ack", "persisted", "later event"]);
    tx.offer(&f("after"), None).unwrap();
    assert_eq!(drain(&rx), ["after"], "nothing is held once released");
}

#[test]
fn events_of_other_sends_are_not_held() {
    let (tx, rx) = outbox(16);
    tx.expect_ack(Uuid::new_v4());
    tx.offer(&f("someone else's"), Some(Uuid::new_v4()))
        .unwrap();
    assert_eq!(drain(&rx), ["someone else's"]);
}

#[test]
fn with_sends_in_flight_each_ack_lets_go_of_the_events_up_to_the_next_send() {
    let (tx, rx) = outbox(16);
    let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
    tx.expect_ack(a);
    tx.expect_ack(b);
    tx.offer(&f("a persisted"), Some(a)).unwrap();
    tx.offer(&f("typing"), None).unwrap();
    tx.offer(&f("b persisted"), Some(b)).unwrap();
    tx.offer(&f("after b"), None).unwrap();
    assert!(drain(&rx).is_empty());
    tx.reply(f("ack a")).unwrap();
    tx.settle(a).unwrap();
    assert_eq!(drain(&rx), ["ack a", "a persisted", "typing"]);
    tx.reply(f("ack b")).unwrap();
    tx.settle(b).unwrap();
    assert_eq!(drain(&rx), ["ack b", "b persisted", "after b"]);
}

#[test]
fn held_events_are_bounded_by_the_capacity_too() {
    let (tx, _rx) = outbox(2);
    let temp_id = Uuid::new_v4();
    tx.expect_ack(temp_id);
    tx.offer(&f("held 1"), Some(temp_id)).unwrap();
    tx.offer(&f("held 2"), None).unwrap();
    assert_eq!(tx.offer(&f("held 3"), None), Err(Refused::Full));
}
