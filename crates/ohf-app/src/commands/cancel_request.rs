//! Cancel a request.

use ohf_domain::{DomainError, Request, RequestId, RequestKind};

use crate::cqrs::{Handler, message};
use crate::ports::StoreError;
use crate::{App, AppError};

/// Cancel a request and terminate what it launched. A request other writers keep changing
/// answers busy.
#[derive(Debug, Clone, Default)]
pub struct CancelRequest {
    /// The request to cancel.
    pub request_id: String,
    /// Who asks (a token's name, the OS user), recorded on the events the cancel makes.
    pub requester: Option<String>,
}

message!(command CancelRequest => Request);

impl Handler<CancelRequest> for App {
    /// Cancels a request and terminates what it launched.
    async fn handle(&self, cmd: CancelRequest) -> Result<Request, AppError> {
        let id = RequestId::new(cmd.request_id)?;
        let requester = ohf_domain::check_requester(cmd.requester.as_deref())?;
        for _ in 0..3 {
            let mut request = self
                .store
                .get(&id)
                .await?
                .ok_or_else(|| DomainError::RequestNotFound { request_id: id.to_string() })?;
            let now = self.clock.now();
            request.cancel(now)?;
            // A return cancelled while it drained hands its machines back to their holders.
            let mut holders = Vec::new();
            if request.kind() == RequestKind::Return {
                let ids: Vec<RequestId> = request.holders().values().cloned().collect();
                holders = self.store.get_many(&ids).await?;
                for h in holders.iter_mut() {
                    for (machine, holder) in request.holders() {
                        if holder == h.id() {
                            h.cancel_return_of(machine, &id, now);
                        }
                    }
                }
            }
            let mut batch: Vec<&mut Request> = vec![&mut request];
            batch.extend(holders.iter_mut().filter(|h| !h.uncommitted().is_empty()));
            match self.commit_as(&mut batch, requester.as_deref()).await {
                Ok(()) => {
                    tracing::info!(request_id = %id, "request cancelled");
                    self.reconcile(Some(std::slice::from_ref(&id))).await;
                    return Ok(self.store.get(&id).await?.unwrap_or(request));
                }
                Err(StoreError::Conflict { .. }) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        // Another writer kept changing it: it is mid-transition. Say so rather than queue.
        Err(AppError::Busy { request_id: id.to_string(), retry_after_secs: 1 })
    }
}
