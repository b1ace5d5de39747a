//! Typed messages. A [`Command`] changes what the application holds; a [`Query`] only reads.
//! Each message type has one [`Handler`] on [`App`], in the file that defines it
//! (`commands/`, `queries/`), and callers send it with [`App::execute`] or [`App::ask`]:
//!
//! ```
//! # async fn demo(app: &ohf_app::App) -> Result<(), ohf_app::AppError> {
//! use ohf_app::commands::RequestMachines;
//! use ohf_app::queries::GetRequestStatus;
//!
//! let request = app
//!     .execute(RequestMachines { template_id: "OnDemand-Minimal".into(), count: 2, ..Default::default() })
//!     .await?;
//! let status = app.ask(GetRequestStatus { request_ids: vec![request.id().to_string()] }).await?;
//! # let _ = status; Ok(()) }
//! ```

use std::future::Future;

use crate::{App, AppError};

/// A message with the answer its handler gives.
pub trait Message: Send + Sized {
    /// What the handler answers.
    type Output: Send;
}

/// A message that changes what the application holds (requests, registrations, configuration)
/// or asks the cloud to.
pub trait Command: Message {}

/// A message that only reads.
pub trait Query: Message {}

/// The one handler of a message type.
pub trait Handler<M: Message> {
    /// Handles `message`.
    fn handle(&self, message: M) -> impl Future<Output = Result<M::Output, AppError>> + Send;
}

impl App {
    /// Runs a command.
    pub async fn execute<C: Command>(&self, command: C) -> Result<C::Output, AppError>
    where
        Self: Handler<C>,
    {
        self.handle(command).await
    }

    /// Answers a query.
    pub async fn ask<Q: Query>(&self, query: Q) -> Result<Q::Output, AppError>
    where
        Self: Handler<Q>,
    {
        self.handle(query).await
    }
}

/// Declares messages: `command!(Type => Output)` or `query!(Type => Output)`.
macro_rules! message {
    (command $t:ty => $out:ty) => {
        impl $crate::cqrs::Message for $t {
            type Output = $out;
        }
        impl $crate::cqrs::Command for $t {}
    };
    (query $t:ty => $out:ty) => {
        impl $crate::cqrs::Message for $t {
            type Output = $out;
        }
        impl $crate::cqrs::Query for $t {}
    };
}
pub(crate) use message;
