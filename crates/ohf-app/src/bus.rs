//! The in-process event bus. Events are published after they are stored, so a handler never
//! sees an event that a crash could take back.

use std::sync::Arc;

use async_trait::async_trait;
use ohf_domain::{EventEnvelope, Timestamp};
use serde::Serialize;
use tokio::sync::broadcast;

/// Reacts to stored events (projections, notifications, logs).
#[async_trait]
pub trait EventHandler: Send + Sync + 'static {
    async fn handle(&self, event: &EventEnvelope);
}

/// Something that happened outside any request, for live subscribers.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum SystemEvent {
    /// A provider's circuit breaker for one service changed state.
    BreakerChanged { provider: String, service: String, from: String, to: String, failures: u32, at: Timestamp },
    /// A provider was chosen for an operation.
    ProviderSelected { operation: String, provider: String, policy: String, reason: String, at: Timestamp },
    /// A request's launches moved to another provider after a failure.
    ProviderFailover { request_id: String, from: String, to: String, reason: String, at: Timestamp },
    /// A provider turned healthy or unhealthy.
    ProviderHealthChanged { provider: String, healthy: bool, source: String, message: String, at: Timestamp },
}

/// Fans stored events out to handlers and to live subscribers.
#[derive(Clone)]
pub struct EventBus {
    handlers: Vec<Arc<dyn EventHandler>>,
    live: broadcast::Sender<EventEnvelope>,
    system: broadcast::Sender<SystemEvent>,
}

impl Default for EventBus {
    fn default() -> Self {
        Self::new(Vec::new())
    }
}

impl EventBus {
    pub fn new(handlers: Vec<Arc<dyn EventHandler>>) -> Self {
        let (live, _) = broadcast::channel(1024);
        let (system, _) = broadcast::channel(256);
        Self { handlers, live, system }
    }

    /// Live system events from now on.
    pub fn subscribe_system(&self) -> broadcast::Receiver<SystemEvent> {
        self.system.subscribe()
    }

    pub fn publish_system(&self, event: SystemEvent) {
        tracing::debug!(?event, "system event");
        let _ = self.system.send(event);
    }

    /// Live events from now on; a subscriber that falls behind is told how many it missed.
    pub fn subscribe(&self) -> broadcast::Receiver<EventEnvelope> {
        self.live.subscribe()
    }

    pub async fn publish(&self, events: &[EventEnvelope]) {
        for event in events {
            tracing::debug!(request_id = %event.request_id, seq = event.seq, event = event.event.name(), "event");
            for h in &self.handlers {
                h.handle(event).await;
            }
            // No live subscriber is not an error.
            let _ = self.live.send(event.clone());
        }
    }
}
