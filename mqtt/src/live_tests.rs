//! The link against a real broker (see [`crate::testing`]).

mod faults;

use crate::testing::{Broker, Pki, Subscriber, TlsListener, wait_for};
use crate::*;
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The status as JSON: `{"state": "online", "since_ms": ...}`.
struct JsonStatus;

impl StatusPayload for JsonStatus {
    fn encode(&self, liveness: Liveness, since_ms: Option<u64>) -> Result<Vec<u8>, EncodeError> {
        let state = if liveness == Liveness::Online { "online" } else { "offline" };
        Ok(serde_json::to_vec(&serde_json::json!({"state": state, "since_ms": since_ms}))?)
    }
}

fn status_topic(device: &str) -> String {
    format!("devices/{device}/status")
}

/// Options for the plain listener, or the TLS one with `tls`.
fn options(broker: &Broker, device: &str, tls: Option<TlsOptions>) -> LinkOptions {
    let port = if tls.is_some() { broker.tls_port() } else { broker.port() };
    LinkOptions { tls, ..options_at(port, device) }
}

/// Options for a plain connection to `port` on loopback.
fn options_at(port: u16, device: &str) -> LinkOptions {
    let presence = Presence { topic: status_topic(device), qos: QoS::AtLeastOnce, payload: Arc::new(JsonStatus) };
    LinkOptions {
        client_id: device.to_owned(),
        brokers: vec![BrokerAddress::new("127.0.0.1", port)],
        keep_alive: Duration::from_secs(5),
        connect_timeout: Duration::from_secs(5),
        max_packet_bytes: 256 * 1024,
        max_skipped_packet_bytes: 1024 * 1024,
        queue_capacity: 64,
        credentials: None,
        tls: None,
        presence: Some(presence),
        subscription_qos: QoS::AtLeastOnce,
    }
}

fn start(options: LinkOptions, routes: Vec<Route>) -> (MqttHandle, JoinHandle<()>) {
    let (handle, pending) = connect(options).expect("valid options");
    (handle, pending.start(routes).expect("link starts"))
}

fn tls(pki: &Pki, server_name: Option<&str>, client: bool) -> TlsOptions {
    TlsOptions {
        ca: Named::new("ca", pki.ca.clone()),
        client: client.then(|| ClientAuth {
            cert: Named::new("cert", pki.client_cert.clone()),
            key: Named::new("key", pki.client_key.clone()),
        }),
        server_name: server_name.map(|name| Named::new("server name", name.to_owned())),
    }
}

/// The retained status, once the link's `online` publish has reached the broker (connected is not yet there).
fn online_status(broker: &Broker, device: &str) -> serde_json::Value {
    let mut status = serde_json::Value::Null;
    wait_for("the online status", || {
        status = broker.retained(&status_topic(device)).map_or(serde_json::Value::Null, |s| status_json(Some(s)));
        status["state"] == "online"
    });
    status
}

fn status_json(payload: Option<Vec<u8>>) -> serde_json::Value {
    let payload = payload.expect("a retained status");
    serde_json::from_slice(&payload).unwrap_or_else(|e| panic!("status {:?}: {e}", String::from_utf8_lossy(&payload)))
}

#[test]
fn online_status_publishes_and_a_draining_shutdown() {
    let broker = Broker::start(None);
    let (handle, thread) = start(options(&broker, "live-1", None), Vec::new());
    handle.wait_connected(Duration::from_secs(10)).expect("connected");

    let online = online_status(&broker, "live-1");
    assert_eq!(online["state"], "online");
    assert!(online["since_ms"].as_u64().is_some(), "{online}");

    // Many QoS 1 publishes, then shutdown at once: every one must reach the subscriber before it returns.
    let subscriber = Subscriber::start(&broker, "devices/live-1/predictions/#", "devices/live-1/predictions/marker");
    let count = 200;
    let topic = "devices/live-1/predictions/front";
    let deadline = Instant::now() + Duration::from_secs(10);
    for seq in 0..count {
        let payload = format!("{{\"seq\":{seq}}}").into_bytes();
        handle.publish_until(topic, QoS::AtLeastOnce, false, &payload, deadline).expect("queued");
    }
    let report = handle.shutdown(Duration::from_secs(5));
    assert_eq!(report, ShutdownReport { unacked: 0, closed: true });
    thread.join().expect("mqtt thread ends");
    for seq in 0..count {
        assert_eq!(subscriber.next_message(), (topic.to_owned(), format!("{{\"seq\":{seq}}}")));
    }

    let offline = status_json(broker.retained(&status_topic("live-1")));
    assert_eq!(offline["state"], "offline");
    assert!(offline["since_ms"].as_u64().is_some(), "a clean shutdown, not the will: {offline}");
    assert_eq!(
        handle.try_publish("devices/live-1/health".into(), QoS::AtMostOnce, false, b"late".to_vec()),
        Err(PublishError::Closed)
    );
    assert_eq!(handle.try_publish("bad/#".into(), QoS::AtMostOnce, false, Vec::new()), Err(PublishError::Closed));
}

#[test]
fn last_will_marks_the_device_offline() {
    let broker = Broker::start(None);
    let (handle, thread) = start(options(&broker, "live-2", None), Vec::new());
    handle.wait_connected(Duration::from_secs(10)).expect("connected");
    assert_eq!(handle.try_publish("a/#".into(), QoS::AtMostOnce, false, Vec::new()), Err(PublishError::InvalidTopic));

    // End the thread without a Disconnect, as a crash would: the broker then publishes the will.
    handle.crash();
    handle.try_publish("nudge".into(), QoS::AtMostOnce, false, Vec::new()).expect("queued");
    thread.join().expect("mqtt thread ends");
    let mut will = serde_json::Value::Null;
    wait_for("the last will", || {
        will = status_json(broker.retained(&status_topic("live-2")));
        will["state"] == "offline"
    });
    assert_eq!(will["since_ms"], serde_json::Value::Null, "the will, not a clean shutdown: {will}");
}

#[test]
fn a_last_will_published_while_connected_is_answered_with_online() {
    let broker = Broker::start(None);
    let (handle, _thread) = start(options(&broker, "live-9", None), Vec::new());
    handle.wait_connected(Duration::from_secs(10)).expect("connected");
    online_status(&broker, "live-9");
    let subscriber = Subscriber::start(&broker, "devices/live-9/#", "devices/live-9/marker");

    // An earlier connection of the same device, with the same will, that the broker closes only now (as a
    // clustered broker may, after the device is back on another node).
    let (earlier, earlier_thread) =
        start(LinkOptions { client_id: "live-9-earlier".into(), ..options(&broker, "live-9", None) }, Vec::new());
    earlier.wait_connected(Duration::from_secs(10)).expect("connected");
    earlier.crash();
    earlier.try_publish("nudge".into(), QoS::AtMostOnce, false, Vec::new()).expect("queued");
    earlier_thread.join().expect("mqtt thread ends");

    let mut states = Vec::new();
    while states.last() != Some(&"online again".to_owned()) {
        let (topic, payload) = subscriber.next_message();
        assert_eq!(topic, status_topic("live-9"));
        let status: serde_json::Value = serde_json::from_str(&payload).expect("JSON status");
        let will_seen = states.iter().any(|s| s == "will");
        states.push(match (status["state"].as_str(), status["since_ms"].is_null()) {
            (Some("offline"), true) => "will".to_owned(),
            (Some("online"), false) if will_seen => "online again".to_owned(),
            (Some("online"), false) => "online".to_owned(),
            _ => panic!("unexpected status {status} after {states:?}"),
        });
    }
    assert_eq!(online_status(&broker, "live-9")["state"], "online", "the retained status is online again");
    assert_eq!(handle.reconnects(), 0, "the link answered on its connection: {states:?}");
}

#[test]
fn routes_receive_payloads_across_a_broker_restart() {
    let mut broker = Broker::start(None);
    let topic = "devices/live-3/frames/door".to_owned();
    let (sender, received) = mpsc::channel();
    let route = Route {
        topic: topic.clone(),
        sink: Box::new(move |_topic: &str, payload: &[u8]| {
            let _ = sender.send(payload.to_vec());
        }),
    };
    let (handle, thread) = start(options(&broker, "live-3", None), vec![route]);
    handle.wait_connected(Duration::from_secs(10)).expect("connected");

    // The subscription is queued at ConnAck; publish until it is in place.
    let deliver = |broker: &Broker, payload: &str| {
        wait_for("an inbound payload", || {
            broker.publish(&topic, payload);
            received.recv_timeout(Duration::from_millis(200)).is_ok_and(|bytes| bytes == payload.as_bytes())
        });
    };
    deliver(&broker, "frame-1");
    assert_eq!(handle.reconnects(), 0);

    broker.restart();
    wait_for("the reconnection", || handle.reconnects() == 1 && handle.is_connected());
    // persistence is off, so this retained status comes from the new connection.
    let online = online_status(&broker, "live-3");
    assert_eq!(online["state"], "online");
    deliver(&broker, "frame-2");

    assert_eq!(handle.shutdown(Duration::from_secs(5)), ShutdownReport { unacked: 0, closed: true });
    thread.join().expect("mqtt thread ends");
}

#[test]
fn tls_verifies_the_broker_by_server_name() {
    let pki = Pki::generate();
    let broker = Broker::start(Some(TlsListener { pki: &pki, require_certificate: false, expired: false }));
    // The certificate names `localhost` only, so dialling 127.0.0.1 needs a server name.
    let (handle, thread) = start(options(&broker, "live-4", Some(tls(&pki, Some("localhost"), false))), Vec::new());
    handle.wait_connected(Duration::from_secs(10)).expect("connected");
    let online = online_status(&broker, "live-4");
    assert_eq!(online["state"], "online");
    assert_eq!(handle.shutdown(Duration::from_secs(5)), ShutdownReport { unacked: 0, closed: true });
    thread.join().expect("mqtt thread ends");

    let (handle, thread) = start(options(&broker, "live-4", Some(tls(&pki, None, false))), Vec::new());
    let refused = handle.wait_connected(Duration::from_secs(10));
    assert!(matches!(refused, Err(ConnectError::Failed(_))), "127.0.0.1 is not a name in the certificate: {refused:?}");
    assert!(!handle.is_connected());
    assert!(handle.shutdown(Duration::from_secs(2)).closed);
    thread.join().expect("mqtt thread ends");
}

#[test]
fn mutual_tls() {
    let pki = Pki::generate();
    let broker = Broker::start(Some(TlsListener { pki: &pki, require_certificate: true, expired: false }));
    let (handle, thread) = start(options(&broker, "live-5", Some(tls(&pki, Some("localhost"), false))), Vec::new());
    let refused = handle.wait_connected(Duration::from_secs(10));
    assert!(matches!(refused, Err(ConnectError::Failed(_))), "the broker requires a client certificate: {refused:?}");
    assert!(!handle.is_connected());
    assert!(handle.shutdown(Duration::from_secs(2)).closed);
    thread.join().expect("mqtt thread ends");

    let (handle, thread) = start(options(&broker, "live-5", Some(tls(&pki, Some("localhost"), true))), Vec::new());
    handle.wait_connected(Duration::from_secs(10)).expect("connected");
    let online = online_status(&broker, "live-5");
    assert_eq!(online["state"], "online");
    assert_eq!(handle.shutdown(Duration::from_secs(5)), ShutdownReport { unacked: 0, closed: true });
    thread.join().expect("mqtt thread ends");
}

#[test]
fn every_one_of_many_routes_receives_its_messages() {
    let broker = Broker::start(None);
    let (sender, received) = mpsc::channel();
    let routes: Vec<Route> = (0..10)
        .map(|i| {
            let sender = sender.clone();
            let sink = Box::new(move |topic: &str, _: &[u8]| {
                let _ = sender.send(topic.to_owned());
            });
            Route { topic: format!("devices/live-10/frames/r{i}"), sink }
        })
        .collect();
    // Ten routes and the link's own status: two SUBSCRIBE packets.
    let (handle, _thread) = start(options(&broker, "live-10", None), routes);
    handle.wait_connected(Duration::from_secs(10)).expect("connected");
    for i in 0..10 {
        let topic = format!("devices/live-10/frames/r{i}");
        wait_for(&topic, || {
            broker.publish(&topic, "x");
            received.recv_timeout(Duration::from_millis(200)).is_ok_and(|delivered| delivered == topic)
        });
    }
}

#[test]
fn invalid_route_filters_are_refused() {
    let broker = Broker::start(None);
    let (handle, pending) = connect(options(&broker, "live-6", None)).expect("valid options");
    let route = |topic: &str| Route { topic: topic.into(), sink: Box::new(|_: &str, _: &[u8]| {}) };
    assert_eq!(handle.subscribe(route("a/#/b")), Err(PublishError::InvalidTopic));
    let Err(error) = pending.start(vec![route("a/#/b")]) else { panic!("an invalid filter was accepted") };
    assert_eq!(error.to_string(), "invalid MQTT topic filter \"a/#/b\"");
}

/// Hands each message's payload and retained flag over a channel.
struct Collect(mpsc::Sender<(String, bool)>);

impl Sink for Collect {
    fn deliver(&mut self, message: Message<'_>) {
        let _ = self.0.send((String::from_utf8_lossy(message.payload).into_owned(), message.retained));
    }
}

#[test]
fn subscriptions_made_later_get_retained_messages_and_survive_a_restart() {
    let mut broker = Broker::start(None);
    let topic = "devices/live-7/updates/status";
    broker.publish_retained(topic, "before");
    let (reconnected, reconnects) = mpsc::channel();
    let (handle, pending) = connect(LinkOptions { presence: None, ..options(&broker, "live-7", None) }).expect("valid");
    let hook = Box::new(move || {
        let _ = reconnected.send(());
    });
    let thread = pending.on_reconnect(hook).start(Vec::new()).expect("link starts");
    handle.wait_connected(Duration::from_secs(10)).expect("connected");

    let (sender, received) = mpsc::channel();
    let route = Route { topic: topic.to_owned(), sink: Box::new(Collect(sender)) };
    handle.subscribe(route).expect("subscribed");
    let wait = Duration::from_secs(10);
    assert_eq!(received.recv_timeout(wait), Ok(("before".to_owned(), true)), "the retained message, flagged");
    broker.publish(topic, "live");
    assert_eq!(received.recv_timeout(wait), Ok(("live".to_owned(), false)));

    broker.restart();
    reconnects.recv_timeout(Duration::from_secs(15)).expect("the reconnection hook ran");
    // The link subscribes again at ConnAck; publish until the subscription is in place.
    wait_for("a message after the restart", || {
        broker.publish(topic, "again");
        received.recv_timeout(Duration::from_millis(200)).is_ok_and(|message| message == ("again".to_owned(), false))
    });

    handle.unsubscribe(topic).expect("unsubscribed");
    let marker = "devices/live-7/marker";
    let (marker_sender, markers) = mpsc::channel();
    let route = Route { topic: marker.to_owned(), sink: Box::new(Collect(marker_sender)) };
    handle.subscribe(route).expect("subscribed");
    // The broker handles our packets in order: once the later subscription delivers, the unsubscription holds.
    wait_for("the marker subscription", || {
        broker.publish(marker, "m");
        markers.recv_timeout(Duration::from_millis(200)).is_ok()
    });
    broker.publish(topic, "after");
    broker.publish(marker, "m");
    markers.recv_timeout(wait).expect("a marker");
    while let Ok((payload, _)) = received.try_recv() {
        assert_eq!(payload, "again", "nothing after the unsubscription");
    }
    assert_eq!(handle.shutdown(Duration::from_secs(5)), ShutdownReport { unacked: 0, closed: true });
    thread.join().expect("mqtt thread ends");
}

/// Publishes tracked messages while the broker is restarted twice, re-sending what is lost, and checks the
/// bookkeeping: every publish queued gets exactly one outcome, and every token is acknowledged in the end.
#[test]
fn every_tracked_publish_gets_exactly_one_outcome_across_broker_restarts() {
    const TOKENS: u64 = 3000;
    let mut broker = Broker::start(None);
    let (observed, outcomes) = mpsc::channel();
    let (handle, pending) = connect(options(&broker, "live-8", None)).expect("valid options");
    let observer = Box::new(move |token, outcome| {
        let _ = observed.send((token, outcome));
    });
    let thread = pending.on_outcome(observer).start(Vec::new()).expect("link starts");
    handle.wait_connected(Duration::from_secs(10)).expect("connected");
    // Restarts on cue, while this thread keeps publishing.
    let (cue, cues) = mpsc::channel::<()>();
    let restarter = std::thread::spawn(move || {
        for () in cues {
            broker.restart();
        }
        broker
    });

    let mut queued = vec![0u32; TOKENS as usize];
    let mut told = vec![0u32; TOKENS as usize];
    let mut acknowledged = vec![false; TOKENS as usize];
    let mut to_send: std::collections::VecDeque<u64> = (0..TOKENS).collect();
    let mut cue = Some(cue);
    let mut lost = 0;
    let payload = vec![b'x'; 16 * 1024];
    let deadline = Instant::now() + Duration::from_secs(60);
    while acknowledged.iter().any(|acked| !acked) {
        let left = acknowledged.iter().filter(|acked| !**acked).count();
        assert!(Instant::now() < deadline, "{left} tokens never acknowledged");
        while let Some(&token) = to_send.front() {
            // The last tenth at QoS 0: acknowledged once written.
            let qos = if token >= TOKENS * 9 / 10 { QoS::AtMostOnce } else { QoS::AtLeastOnce };
            match handle.try_publish_tracked("devices/live-8/tracked".into(), qos, false, payload.clone(), token) {
                Ok(()) => {
                    queued[token as usize] += 1;
                    to_send.pop_front();
                    if (token == TOKENS / 4 || token == TOKENS / 2) && queued[token as usize] == 1 {
                        cue.as_ref().map(|cue| cue.send(()));
                    }
                }
                Err(PublishError::QueueFull) => break,
                Err(error) => panic!("{error}"),
            }
        }
        if to_send.is_empty() && lost > 0 {
            // Both restarts are cued: let the restarter finish.
            cue.take();
        }
        while let Ok((token, outcome)) = outcomes.recv_timeout(Duration::from_millis(5)) {
            told[token as usize] += 1;
            match outcome {
                Outcome::Acknowledged => acknowledged[token as usize] = true,
                Outcome::Lost => {
                    lost += 1;
                    to_send.push_back(token);
                }
            }
        }
    }
    drop(cue);
    let _broker = restarter.join().expect("restarts done");
    assert!(lost > 0, "a restart with publishes in flight loses some");
    // No outcome is late or doubled: a quiet moment, then the counts must match.
    while let Ok((token, _)) = outcomes.recv_timeout(Duration::from_millis(300)) {
        told[token as usize] += 1;
    }
    let mismatched: Vec<(usize, u32, u32)> =
        (0..TOKENS as usize).filter(|&t| queued[t] != told[t]).map(|t| (t, queued[t], told[t])).collect();
    assert!(mismatched.is_empty(), "(token, queued, outcomes): {mismatched:?}");
    eprintln!("{TOKENS} tokens, {lost} lost and re-sent");
    assert_eq!(handle.shutdown(Duration::from_secs(5)).unacked, 0);
    thread.join().expect("mqtt thread ends");
}

#[test]
fn a_stopped_broker_fails_over_to_the_next_with_the_kept_retained_messages() {
    let first = Broker::start(None);
    let second = Broker::start(None);
    let brokers = vec![BrokerAddress::new("127.0.0.1", first.port()), BrokerAddress::new("127.0.0.1", second.port())];
    let (handle, thread) = start(LinkOptions { brokers, ..options(&first, "failover-1", None) }, Vec::new());
    handle.wait_connected(Duration::from_secs(10)).expect("connected");
    online_status(&first, "failover-1");
    let kept = "devices/failover-1/update/status";
    handle.retain_on_connect(kept, QoS::AtLeastOnce, b"old".to_vec()).expect("kept");
    handle.retain_on_connect(kept, QoS::AtLeastOnce, b"installed".to_vec()).expect("kept");
    wait_for("the kept message on the first broker", || first.retained(kept).as_deref() == Some(b"installed"));
    assert_eq!(second.retained(kept), None, "the second broker has seen nothing yet");

    drop(first);
    // The second broker never had them: the link publishes them there after its ConnAck.
    let online = online_status(&second, "failover-1");
    assert_eq!(online["state"], "online");
    wait_for("the kept message on the second broker", || second.retained(kept).as_deref() == Some(b"installed"));
    assert_eq!(handle.reconnects(), 1);
    assert_eq!(handle.retain_on_connect("bad/+", QoS::AtLeastOnce, Vec::new()), Err(PublishError::InvalidTopic));
    assert_eq!(handle.shutdown(Duration::from_secs(5)), ShutdownReport { unacked: 0, closed: true });
    thread.join().expect("mqtt thread ends");
}

#[test]
fn an_unreachable_first_broker_is_passed_over() {
    let broker = Broker::start(None);
    let dead = BrokerAddress::new("127.0.0.1", crate::testing::free_port());
    let brokers = vec![dead, BrokerAddress::new("127.0.0.1", broker.port())];
    let (handle, thread) = start(LinkOptions { brokers, ..options(&broker, "failover-2", None) }, Vec::new());
    // The first broker's refusal is not the answer while another broker is left to try.
    handle.wait_connected(Duration::from_secs(10)).expect("connected to the second broker");
    assert_eq!(online_status(&broker, "failover-2")["state"], "online");
    assert_eq!(handle.reconnects(), 0, "the first connection is not a reconnect");
    assert_eq!(handle.shutdown(Duration::from_secs(5)), ShutdownReport { unacked: 0, closed: true });
    thread.join().expect("mqtt thread ends");
}
