//! The link against a hostile network and broker: partitions, certificate mistakes, oversize messages.

use super::*;
use crate::testing::{Proxy, free_port};
use std::sync::Mutex;

/// The error of a link that cannot connect, after which it is shut down.
fn first_failure(options: LinkOptions) -> String {
    let (handle, thread) = start(options, Vec::new());
    let result = handle.wait_connected(Duration::from_secs(10));
    assert!(handle.shutdown(Duration::from_secs(2)).closed);
    thread.join().expect("mqtt thread ends");
    match result {
        Err(ConnectError::Failed(error)) => error,
        other => panic!("expected a failed connection, got {other:?}"),
    }
}

#[test]
fn certificate_errors_are_named_as_such() {
    let pki = Pki::generate();
    let stranger = Pki::generate();
    let broker = Broker::start(Some(TlsListener { pki: &pki, require_certificate: false, expired: false }));
    let untrusted = "certificate error: the broker's certificate is not trusted: ";

    let unknown_ca = TlsOptions { ca: Named::new("ca", stranger.ca.clone()), ..tls(&pki, Some("localhost"), false) };
    let error = first_failure(options(&broker, "cert-1", Some(unknown_ca)));
    // Both CAs have the same name, so the stranger's is found and its signature fails.
    assert!(error.starts_with(untrusted) && error.contains("BadSignature"), "{error}");

    let error = first_failure(options(&broker, "cert-2", Some(tls(&pki, Some("other.example"), false))));
    assert!(error.starts_with(untrusted) && error.contains("not valid for name"), "{error}");

    let expired = Broker::start(Some(TlsListener { pki: &pki, require_certificate: false, expired: true }));
    let error = first_failure(options(&expired, "cert-3", Some(tls(&pki, Some("localhost"), false))));
    assert!(error.starts_with(untrusted) && error.contains("certificate expired"), "{error}");

    // The broker does not know the client certificate's CA.
    let mutual = Broker::start(Some(TlsListener { pki: &pki, require_certificate: true, expired: false }));
    let stranger_client = TlsOptions {
        client: Some(ClientAuth {
            cert: Named::new("cert", stranger.client_cert.clone()),
            key: Named::new("key", stranger.client_key.clone()),
        }),
        ..tls(&pki, Some("localhost"), false)
    };
    let error = first_failure(options(&mutual, "cert-4", Some(stranger_client)));
    assert!(error.starts_with("certificate error: the broker refused our certificate: "), "{error}");
}

#[test]
fn the_first_connection_after_failed_attempts_is_not_a_reconnect() {
    // Nothing listens behind the proxy yet: it closes every connection it takes.
    let broker_port = free_port();
    let proxy = Proxy::start(broker_port);
    let (handle, thread) = start(options_at(proxy.port(), "first-1"), Vec::new());
    assert!(matches!(handle.wait_connected(Duration::from_secs(10)), Err(ConnectError::Failed(_))));

    let _broker = Broker::start_on(broker_port, None);
    wait_for("the first connection", || handle.is_connected());
    assert_eq!(handle.reconnects(), 0);

    proxy.cut();
    wait_for("the reconnection", || handle.reconnects() == 1 && handle.is_connected());
    assert_eq!(handle.shutdown(Duration::from_secs(5)), ShutdownReport { unacked: 0, closed: true });
    thread.join().expect("mqtt thread ends");
}

#[test]
fn a_partition_is_noticed_within_twice_the_keep_alive_and_heals() {
    let broker = Broker::start(None);
    let proxy = Proxy::start(broker.port());
    let keep_alive = Duration::from_secs(2);
    let link_options = LinkOptions {
        brokers: vec![BrokerAddress::new("127.0.0.1", proxy.port())],
        keep_alive,
        connect_timeout: Duration::from_secs(1),
        ..options(&broker, "partition-1", None)
    };
    let (handle, thread) = start(link_options, Vec::new());
    handle.wait_connected(Duration::from_secs(10)).expect("connected");

    proxy.partition();
    let partitioned = Instant::now();
    wait_for("the link to notice the partition", || !handle.is_connected());
    let noticed = partitioned.elapsed();
    // Scheduling slack on a loaded machine.
    assert!(noticed <= 2 * keep_alive + Duration::from_millis(500), "noticed after {noticed:?}");

    proxy.heal();
    wait_for("the reconnection", || handle.reconnects() == 1 && handle.is_connected());
    assert!(proxy.accepted() >= 2, "a new connection, not the old one revived");
    let subscriber = Subscriber::start(&broker, "devices/partition-1/after", "devices/partition-1/after");
    let deadline = Instant::now() + Duration::from_secs(5);
    handle.publish_until("devices/partition-1/after", QoS::AtLeastOnce, false, b"healed", deadline).expect("queued");
    assert_eq!(subscriber.next_message(), ("devices/partition-1/after".to_owned(), "healed".to_owned()));
    assert_eq!(handle.shutdown(Duration::from_secs(5)), ShutdownReport { unacked: 0, closed: true });
    thread.join().expect("mqtt thread ends");
}

/// Every skipped message the hook was told of.
fn recording_hook() -> (OversizeHook, Arc<Mutex<Vec<Oversized>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = seen.clone();
    (Box::new(move |oversized: &Oversized| sink.lock().expect("lock").push(oversized.clone())), seen)
}

fn collecting_route(topic: &str) -> (Route, mpsc::Receiver<(String, bool)>) {
    let (sender, received) = mpsc::channel();
    (Route { topic: topic.to_owned(), sink: Box::new(Collect(sender)) }, received)
}

#[test]
fn a_retained_message_over_the_limit_is_skipped_with_the_link_up() {
    const LIMIT: usize = 4096;
    let broker = Broker::start(None);
    let frames = "devices/oversize-1/frames/door";
    // At QoS 1, the remaining length is the topic with its length, the packet id, and the payload.
    let payload = vec![b'x'; LIMIT + 1 - (2 + frames.len() + 2)];
    broker.publish_retained_bytes(frames, &payload);
    let (hook, seen) = recording_hook();
    let (frames_route, frames_received) = collecting_route(frames);
    let (other_route, other_received) = collecting_route("devices/oversize-1/other");
    let link_options =
        LinkOptions { max_packet_bytes: LIMIT, max_skipped_packet_bytes: 8192, ..options(&broker, "oversize-1", None) };
    let (handle, pending) = connect(link_options).expect("valid options");
    let thread = pending.on_oversized(hook).start(vec![frames_route, other_route]).expect("link starts");

    wait_for("the skipped message", || !seen.lock().expect("lock").is_empty());
    let skipped = Oversized { topic: Some(frames.to_owned()), bytes: LIMIT + 1, limit: LIMIT };
    assert_eq!(*seen.lock().expect("lock"), [skipped]);
    wait_for("the link", || handle.is_connected());
    // One reconnection raised the read limit; the link then stays up although the broker keeps the message.
    assert_eq!(handle.reconnects(), 1);
    assert_eq!(broker.retained(frames).map(|kept| kept.len()), Some(payload.len()));

    let wait = Duration::from_secs(10);
    broker.publish(frames, "small");
    assert_eq!(frames_received.recv_timeout(wait), Ok(("small".to_owned(), false)));
    broker.publish("devices/oversize-1/other", "other");
    assert_eq!(other_received.recv_timeout(wait), Ok(("other".to_owned(), false)));
    assert_eq!(handle.reconnects(), 1);
    assert_eq!(seen.lock().expect("lock").len(), 1);
    assert!(frames_received.try_recv().is_err(), "the oversize message is never delivered");
    assert_eq!(handle.shutdown(Duration::from_secs(5)), ShutdownReport { unacked: 0, closed: true });
    thread.join().expect("mqtt thread ends");
}

#[test]
fn a_message_above_the_skip_ceiling_is_reported_once_without_its_topic() {
    let broker = Broker::start(None);
    let topic = "devices/oversize-2/frames/door";
    broker.publish_retained_bytes(topic, &vec![b'x'; 10_000]);
    let (hook, seen) = recording_hook();
    let (route, received) = collecting_route(topic);
    let link_options =
        LinkOptions { max_packet_bytes: 4096, max_skipped_packet_bytes: 8192, ..options(&broker, "oversize-2", None) };
    let (handle, pending) = connect(link_options).expect("valid options");
    let thread = pending.on_oversized(hook).start(vec![route]).expect("link starts");

    wait_for("the report", || !seen.lock().expect("lock").is_empty());
    let bytes = 2 + topic.len() + 2 + 10_000;
    assert_eq!(*seen.lock().expect("lock"), [Oversized { topic: None, bytes, limit: 4096 }]);
    // The next attempt waits the longest backoff (10 s): no loop.
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(seen.lock().expect("lock").len(), 1);
    assert!(!handle.is_connected());
    assert!(received.try_recv().is_err());
    assert!(handle.shutdown(Duration::from_secs(2)).closed);
    thread.join().expect("mqtt thread ends");
}
