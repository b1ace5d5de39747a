//! The in-process event bus. Events are published after they are stored, so a subscriber never
//! sees an event that a crash could take back.
//!
//! Subscribers (`EventHandler`) run asynchronously, each on a task of its own fed by a bounded
//! queue: a command never waits for them, a subscriber that fails or hangs past
//! `HANDLER_TIMEOUT` is logged and counted, and nothing a subscriber does undoes the command.
//! The tasks end when the last clone of the bus is dropped.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use async_trait::async_trait;
use ohf_domain::{EventEnvelope, Timestamp};
use serde::Serialize;
use tokio::sync::{broadcast, mpsc};

/// How long one subscriber may take over one event.
pub const HANDLER_TIMEOUT: Duration = Duration::from_secs(5);
/// Events waiting for one subscriber; past this they are dropped (and counted), never queued
/// without bound.
const QUEUE: usize = 4096;

/// Reacts to stored events (projections, notifications, logs, metrics).
#[async_trait]
pub trait EventHandler: Send + Sync + 'static {
    /// A short name for logs and counters.
    fn name(&self) -> &str;
    /// Handles one stored event; an error is logged and counted.
    async fn handle(&self, event: &EventEnvelope) -> Result<(), String>;
}

/// Something that happened outside any request, for live subscribers.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum SystemEvent {
    /// A provider's circuit breaker for one service changed state.
    BreakerChanged {
        /// The provider.
        provider: String,
        /// The service of the provider.
        service: String,
        /// The state before (CLOSED, OPEN, HALF_OPEN).
        from: String,
        /// The state after.
        to: String,
        /// Consecutive failures when it changed.
        failures: u32,
        /// When.
        at: Timestamp,
    },
    /// A provider was chosen for an operation.
    ProviderSelected {
        /// The operation (CREATE_INSTANCES, …).
        operation: String,
        /// The provider chosen.
        provider: String,
        /// The policy that chose it.
        policy: String,
        /// Why it won.
        reason: String,
        /// When.
        at: Timestamp,
    },
    /// A request's launches moved to another provider after a failure.
    ProviderFailover {
        /// The request.
        request_id: String,
        /// The provider that failed.
        from: String,
        /// The provider the next attempt goes to.
        to: String,
        /// The failure.
        reason: String,
        /// When.
        at: Timestamp,
    },
    /// A provider turned healthy or unhealthy.
    ProviderHealthChanged {
        /// The provider.
        provider: String,
        /// Healthy now or not.
        healthy: bool,
        /// Who said so (operations, a health check, an outside verdict).
        source: String,
        /// Why.
        message: String,
        /// When.
        at: Timestamp,
    },
}

/// What the subscribers of a bus have done, per subscriber.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct HandlerFigures {
    /// Events the subscriber handled.
    pub handled: u64,
    /// Events the subscriber answered with an error.
    pub failed: u64,
    /// Events the subscriber did not finish within the bus's timeout.
    pub timed_out: u64,
    /// Events dropped because the subscriber's queue was full.
    pub dropped: u64,
}

#[derive(Default)]
struct Counters {
    /// Events queued or being handled.
    pending: AtomicU64,
    handled: AtomicU64,
    failed: AtomicU64,
    timed_out: AtomicU64,
    dropped: AtomicU64,
}

struct Subscriber {
    handler: Arc<dyn EventHandler>,
    timeout: Duration,
    /// Made on the first publish, inside the runtime that runs the subscriber's task.
    queue: OnceLock<mpsc::Sender<EventEnvelope>>,
    counters: Arc<Counters>,
}

impl Subscriber {
    fn queue(&self) -> &mpsc::Sender<EventEnvelope> {
        self.queue.get_or_init(|| {
            let (tx, mut rx) = mpsc::channel::<EventEnvelope>(QUEUE);
            let handler = self.handler.clone();
            let counters = self.counters.clone();
            let timeout = self.timeout;
            tokio::spawn(async move {
                while let Some(event) = rx.recv().await {
                    match tokio::time::timeout(timeout, handler.handle(&event)).await {
                        Ok(Ok(())) => counters.handled.fetch_add(1, Ordering::Relaxed),
                        Ok(Err(e)) => {
                            tracing::warn!(subscriber = handler.name(), request_id = %event.request_id, seq = event.seq, error = %e, "event subscriber failed");
                            counters.failed.fetch_add(1, Ordering::Relaxed)
                        }
                        Err(_) => {
                            tracing::warn!(subscriber = handler.name(), request_id = %event.request_id, seq = event.seq, timeout_ms = timeout.as_millis() as u64, "event subscriber timed out");
                            counters.timed_out.fetch_add(1, Ordering::Relaxed)
                        }
                    };
                    counters.pending.fetch_sub(1, Ordering::Relaxed);
                }
            });
            tx
        })
    }
}

/// Fans stored events out to subscribers and to live listeners. The live channels are made
/// on the first subscription: a process no one watches (a Host Factory call) sets up none.
#[derive(Clone)]
pub struct EventBus {
    subscribers: Arc<Vec<Subscriber>>,
    live: Arc<OnceLock<broadcast::Sender<EventEnvelope>>>,
    system: Arc<OnceLock<broadcast::Sender<SystemEvent>>>,
}

impl Default for EventBus {
    fn default() -> Self {
        Self::new(Vec::new())
    }
}

impl EventBus {
    /// A bus whose subscribers each get `HANDLER_TIMEOUT` per event.
    pub fn new(handlers: Vec<Arc<dyn EventHandler>>) -> Self {
        Self::with_timeout(handlers, HANDLER_TIMEOUT)
    }

    /// A bus whose subscribers each get `timeout` per event.
    pub fn with_timeout(handlers: Vec<Arc<dyn EventHandler>>, timeout: Duration) -> Self {
        let subscribers = handlers
            .into_iter()
            .map(|handler| Subscriber { handler, timeout, queue: OnceLock::new(), counters: Arc::default() })
            .collect();
        Self { subscribers: Arc::new(subscribers), live: Arc::default(), system: Arc::default() }
    }

    /// Live system events from now on.
    pub fn subscribe_system(&self) -> broadcast::Receiver<SystemEvent> {
        self.system.get_or_init(|| broadcast::channel(256).0).subscribe()
    }

    /// Publishes a system event to live subscribers (no subscriber is an answer too).
    pub fn publish_system(&self, event: SystemEvent) {
        tracing::debug!(?event, "system event");
        if let Some(system) = self.system.get() {
            let _ = system.send(event);
        }
    }

    /// Live events from now on; a subscriber that falls behind is told how many it missed.
    pub fn subscribe(&self) -> broadcast::Receiver<EventEnvelope> {
        self.live.get_or_init(|| broadcast::channel(1024).0).subscribe()
    }

    /// Hands stored events to every subscriber's queue and to live listeners; never waits for
    /// a subscriber.
    pub async fn publish(&self, events: &[EventEnvelope]) {
        for event in events {
            for s in self.subscribers.iter() {
                s.counters.pending.fetch_add(1, Ordering::Relaxed);
                if s.queue().try_send(event.clone()).is_err() {
                    s.counters.pending.fetch_sub(1, Ordering::Relaxed);
                    s.counters.dropped.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(subscriber = s.handler.name(), request_id = %event.request_id, "event subscriber is behind; event dropped");
                }
            }
            // No live subscriber is not an error.
            if let Some(live) = self.live.get() {
                let _ = live.send(event.clone());
            }
        }
    }

    /// Waits, at most `within`, until every subscriber has handled what it was handed: a
    /// short-lived process (a Host Factory call, a command) calls it before it exits, so its
    /// alerts and figures are not cut off. Answers whether everything was handled.
    pub async fn drain(&self, within: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if self.subscribers.iter().all(|s| s.counters.pending.load(Ordering::Relaxed) == 0) {
                return true;
            }
            if tokio::time::Instant::now() >= deadline {
                tracing::warn!("event subscribers still busy at exit; what they had left is dropped");
                return false;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// What each subscriber has done so far, by name.
    pub fn figures(&self) -> BTreeMap<String, HandlerFigures> {
        self.subscribers
            .iter()
            .map(|s| {
                let c = &s.counters;
                let figures = HandlerFigures {
                    handled: c.handled.load(Ordering::Relaxed),
                    failed: c.failed.load(Ordering::Relaxed),
                    timed_out: c.timed_out.load(Ordering::Relaxed),
                    dropped: c.dropped.load(Ordering::Relaxed),
                };
                (s.handler.name().to_owned(), figures)
            })
            .collect()
    }
}

/// The structured event log: every stored request event as one log line with its fields.
pub struct EventLog;

#[async_trait]
impl EventHandler for EventLog {
    fn name(&self) -> &str {
        "event_log"
    }

    async fn handle(&self, event: &EventEnvelope) -> Result<(), String> {
        tracing::info!(target: "ohf::events", request_id = %event.request_id, seq = event.seq, at = %event.at.to_rfc3339(), event = event.event.name(), "request event");
        Ok(())
    }
}

/// Counts stored request events by kind, for the metrics exporter.
#[derive(Default)]
pub struct EventCounts(Mutex<BTreeMap<&'static str, u64>>);

impl EventCounts {
    /// Events counted so far, by kind (`created`, `state_changed`, …).
    pub fn snapshot(&self) -> BTreeMap<&'static str, u64> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

#[async_trait]
impl EventHandler for EventCounts {
    fn name(&self) -> &str {
        "metrics"
    }

    async fn handle(&self, event: &EventEnvelope) -> Result<(), String> {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()).entry(event.event.name()).or_default() += 1;
        Ok(())
    }
}
