//! Requests as stored: by id, by filter, and their histories.

use std::collections::HashMap;

use ohf_domain::limits;
use ohf_domain::{DomainError, EventEnvelope, Request, RequestId};

use crate::cqrs::{Handler, message};
use crate::ports::RequestFilter;
use crate::{App, AppError};

/// The requests of `request_ids`, each with `None` when ohf does not know it.
#[derive(Debug, Clone, Default)]
pub struct GetRequestStatus {
    /// The requests asked about.
    pub request_ids: Vec<String>,
}

message!(query GetRequestStatus => Vec<(String, Option<Request>)>);

/// The requests a filter selects, newest first.
#[derive(Debug, Clone, Default)]
pub struct ListRequests {
    /// Which requests.
    pub filter: RequestFilter,
}

message!(query ListRequests => Vec<Request>);

/// Every stored event of one request (its audit trail).
#[derive(Debug, Clone)]
pub struct GetRequestHistory {
    /// The request.
    pub request_id: String,
}

message!(query GetRequestHistory => Vec<EventEnvelope>);

impl Handler<GetRequestStatus> for App {
    /// The requests of `ids`, each with `None` when ohf does not know it.
    async fn handle(&self, q: GetRequestStatus) -> Result<Vec<(String, Option<Request>)>, AppError> {
        limits::check_len("requestIds", q.request_ids.len(), limits::MAX_ITEMS_PER_CALL)?;
        let parsed: Vec<RequestId> = q.request_ids.iter().filter_map(|i| RequestId::new(i.clone()).ok()).collect();
        let found = self.store.get_many(&parsed).await?;
        let mut by_id: HashMap<String, Request> = found.into_iter().map(|r| (r.id().to_string(), r)).collect();
        // Each request is moved into the answer; an id asked twice gets a copy the second time.
        let mut answer: Vec<(String, Option<Request>)> = Vec::with_capacity(q.request_ids.len());
        let mut given: HashMap<&str, usize> = HashMap::new();
        for i in &q.request_ids {
            let request = match by_id.remove(i.as_str()) {
                Some(r) => Some(r),
                None => given.get(i.as_str()).and_then(|&n| answer[n].1.clone()),
            };
            given.insert(i.as_str(), answer.len());
            answer.push((i.clone(), request));
        }
        Ok(answer)
    }
}

impl Handler<ListRequests> for App {
    async fn handle(&self, q: ListRequests) -> Result<Vec<Request>, AppError> {
        Ok(self.store.list(&q.filter).await?)
    }
}

impl Handler<GetRequestHistory> for App {
    async fn handle(&self, q: GetRequestHistory) -> Result<Vec<EventEnvelope>, AppError> {
        let id = RequestId::new(q.request_id)?;
        if self.store.get(&id).await?.is_none() {
            return Err(DomainError::RequestNotFound { request_id: id.to_string() }.into());
        }
        Ok(self.store.history(&id).await?)
    }
}
