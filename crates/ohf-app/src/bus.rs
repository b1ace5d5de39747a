//! The in-process event bus. Events are published after they are stored, so a handler never
//! sees an event that a crash could take back.

use std::sync::Arc;

use async_trait::async_trait;
use ohf_domain::EventEnvelope;
use tokio::sync::broadcast;

/// Reacts to stored events (projections, notifications, logs).
#[async_trait]
pub trait EventHandler: Send + Sync + 'static {
    async fn handle(&self, event: &EventEnvelope);
}

/// Fans stored events out to handlers and to live subscribers.
#[derive(Clone)]
pub struct EventBus {
    handlers: Vec<Arc<dyn EventHandler>>,
    live: broadcast::Sender<EventEnvelope>,
}

impl Default for EventBus {
    fn default() -> Self {
        Self::new(Vec::new())
    }
}

impl EventBus {
    pub fn new(handlers: Vec<Arc<dyn EventHandler>>) -> Self {
        let (live, _) = broadcast::channel(1024);
        Self { handlers, live }
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
