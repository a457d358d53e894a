//! A TCP proxy on loopback between a client and a broker, to cut the network in ways a broker can't: a
//! partition stops forwarding while both sockets stay open (no FIN, no RST: silence, as when a radio link dies),
//! and lets the bytes through again when it heals.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread;
use std::time::Duration;

/// How often a blocked pump looks at the proxy's state.
const TICK: Duration = Duration::from_millis(20);

/// The proxy; it stops and closes every connection on drop.
pub struct Proxy {
    port: u16,
    state: Arc<State>,
}

#[derive(Default)]
struct State {
    flow: Mutex<Flow>,
    changed: Condvar,
    /// The listener ends once set.
    stopped: AtomicBool,
}

#[derive(Debug, Clone, Copy, Default)]
struct Flow {
    partitioned: bool,
    /// Raised by [`Proxy::cut`]: connections of an older generation close.
    generation: u64,
    accepted: u64,
}

impl Proxy {
    /// Forwards connections on a free loopback port to `upstream` (a port on 127.0.0.1).
    pub fn start(upstream: u16) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the proxy");
        let port = listener.local_addr().expect("proxy address").port();
        let state = Arc::new(State::default());
        let accepting = state.clone();
        thread::spawn(move || {
            for client in listener.incoming() {
                if accepting.stopped.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(client) = client else { continue };
                let generation = {
                    let mut flow = accepting.lock();
                    flow.accepted += 1;
                    flow.generation
                };
                let connection = accepting.clone();
                thread::spawn(move || connection.forward(client, upstream, generation));
            }
        });
        Proxy { port, state }
    }

    /// The port clients connect to.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Stops forwarding, both ways and for new connections, keeping every socket open.
    pub fn partition(&self) {
        self.state.update(|flow| flow.partitioned = true);
    }

    /// Forwards again, including what waited.
    pub fn heal(&self) {
        self.state.update(|flow| flow.partitioned = false);
    }

    /// Closes every connection open now (both sides see the close).
    pub fn cut(&self) {
        self.state.update(|flow| flow.generation += 1);
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> u64 {
        self.state.lock().accepted
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.state.stopped.store(true, Ordering::SeqCst);
        self.cut();
        // Wakes the listener's accept.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

impl State {
    fn lock(&self) -> MutexGuard<'_, Flow> {
        self.flow.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn update(&self, change: impl FnOnce(&mut Flow)) {
        change(&mut self.lock());
        self.changed.notify_all();
    }

    /// Waits while partitioned; false once the connection of `generation` must close.
    fn wait_to_forward(&self, generation: u64) -> bool {
        let mut flow = self.lock();
        loop {
            if flow.generation != generation || self.stopped.load(Ordering::SeqCst) {
                return false;
            }
            if !flow.partitioned {
                return true;
            }
            flow = self.changed.wait_timeout(flow, TICK).unwrap_or_else(PoisonError::into_inner).0;
        }
    }

    fn forward(self: Arc<Self>, client: TcpStream, upstream: u16, generation: u64) {
        // Partitioned: the client's connection is accepted (the kernel does that anyway) but goes nowhere.
        if !self.wait_to_forward(generation) {
            return;
        }
        let Ok(broker) = TcpStream::connect(("127.0.0.1", upstream)) else { return };
        let (Ok(client_reader), Ok(broker_reader)) = (client.try_clone(), broker.try_clone()) else { return };
        let state = self.clone();
        thread::spawn(move || state.pump(client_reader, broker, generation));
        self.pump(broker_reader, client, generation);
    }

    /// Copies `from` to `to` while the flow allows; closes both when either side closes or the proxy cuts.
    fn pump(&self, mut from: TcpStream, mut to: TcpStream, generation: u64) {
        let _ = from.set_read_timeout(Some(TICK));
        let mut buffer = vec![0; 64 * 1024];
        while self.wait_to_forward(generation) {
            match from.read(&mut buffer) {
                Ok(0) => break,
                // Bytes read just as a partition began wait for it to heal.
                Ok(read) if self.wait_to_forward(generation) && to.write_all(&buffer[..read]).is_ok() => {}
                Ok(_) => break,
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(_) => break,
            }
        }
        let _ = from.shutdown(Shutdown::Both);
        let _ = to.shutdown(Shutdown::Both);
    }
}
