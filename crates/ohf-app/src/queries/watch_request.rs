//! Watch a request change.

use std::time::Duration;

use ohf_domain::{DomainError, EventEnvelope, Request, RequestId};

use crate::cqrs::{Handler, message};
use crate::{App, AppError};

/// The events of a request from sequence number `from_seq` on (a request's events are
/// numbered from 0; its `seq()` is the next one), with the request after them. Waits up to
/// `wait` for the first new event unless the request is final; events stored by other
/// processes are seen within `poll`.
#[derive(Debug, Clone)]
pub struct WatchRequest {
    /// The request.
    pub request_id: String,
    /// The first event wanted.
    pub from_seq: u64,
    /// How long to wait for one.
    pub wait: Duration,
    /// How often to look at the store for other processes' events.
    pub poll: Duration,
}

message!(query WatchRequest => (Request, Vec<EventEnvelope>));

impl Handler<WatchRequest> for App {
    /// The events of a request from sequence number `from` on (a request's events are numbered
    /// from 0; its `seq()` is the next one), with the request after them. Waits up to `wait` for
    /// the first new event unless the request is final; events stored by other processes are
    /// seen within `poll`.
    async fn handle(&self, q: WatchRequest) -> Result<(Request, Vec<EventEnvelope>), AppError> {
        let id = RequestId::new(q.request_id)?;
        let (from, wait, poll) = (q.from_seq, q.wait, q.poll);
        let mut live = self.bus.subscribe();
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let request = self
                .store
                .get(&id)
                .await?
                .ok_or_else(|| DomainError::RequestNotFound { request_id: id.to_string() })?;
            if request.seq() > from {
                let events: Vec<_> = self.store.history(&id).await?.into_iter().filter(|e| e.seq >= from).collect();
                // The request read above may be older than the history read after it.
                let request = if events.last().is_some_and(|e| e.seq >= request.seq()) {
                    self.store.get(&id).await?.unwrap_or(request)
                } else {
                    request
                };
                let next = request.seq();
                return Ok((request, events.into_iter().filter(|e| e.seq < next).collect()));
            }
            if request.state().is_terminal() && !request.needs_work() {
                return Ok((request, Vec::new()));
            }
            let now = tokio::time::Instant::now();
            if now >= deadline {
                return Ok((request, Vec::new()));
            }
            let nap = (deadline - now).min(poll);
            let mine = async {
                loop {
                    match live.recv().await {
                        Ok(e) if e.request_id == id => return,
                        Ok(_) => {}
                        Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => return,
                        Err(tokio::sync::broadcast::error::RecvError::Closed) => std::future::pending().await,
                    }
                }
            };
            let _ = tokio::time::timeout(nap, mine).await;
        }
    }
}
