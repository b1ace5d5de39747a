//! Where an operator command's methods run: on this process's own application over the local
//! store, or on a daemon over its HTTP JSON API. Either way the answers are the JSON API's
//! documents, so the command line renders one shape.

use serde_json::Value;

use crate::client::{ClientOptions, Remote};
use crate::settings::Resolved;
use crate::wiring::{self, Runtime};

/// The application a command talks to.
pub enum Backend {
    /// This process's own application; `advance` reconciles what a poll reads first.
    Local { rt: Box<Runtime>, advance: bool },
    /// A daemon (`--server`).
    Remote(Remote),
}

impl Backend {
    /// The application built from `settings`, in this process.
    pub async fn local(settings: &Resolved) -> anyhow::Result<Self> {
        Ok(Backend::Local {
            rt: Box::new(wiring::build(settings, wiring::Lifetime::Call).await?),
            advance: settings.advance_on_poll,
        })
    }

    /// A daemon reached with `options`.
    pub fn remote(options: &ClientOptions) -> anyhow::Result<Self> {
        Ok(Backend::Remote(Remote::new(options)?))
    }

    /// Calls one method of the JSON API.
    pub async fn call(&self, method: &str, params: Value) -> anyhow::Result<Value> {
        // A creation from this command line is asked by the user running it.
        let mut params = params;
        if let Some(user) = crate::process::os_user() {
            ohf_api::default_requester(method, &mut params, &user);
        }
        match self {
            Backend::Local { rt, advance } => {
                if *advance {
                    ohf_api::poll::advance_before(&rt.app, method, &params).await;
                }
                Ok(ohf_api::call_method(&rt.app, method, &params).await?)
            }
            Backend::Remote(remote) => remote.call(method, &params).await,
        }
    }

    /// The metrics text: the daemon's, or this process's view of the shared store (no worker,
    /// no API calls) when it runs locally, as Host Factory's scripts do.
    pub async fn metrics(&self) -> anyhow::Result<String> {
        match self {
            Backend::Local { rt, .. } => Ok(crate::metrics::Metrics::new(rt, None).render().await),
            Backend::Remote(remote) => remote.metrics().await,
        }
    }

    /// The local application, when there is one.
    pub fn runtime(&self) -> Option<&Runtime> {
        match self {
            Backend::Local { rt, .. } => Some(rt),
            Backend::Remote(_) => None,
        }
    }

    pub fn is_local(&self) -> bool {
        matches!(self, Backend::Local { .. })
    }

    /// Writes this process's provider figures to the store and lets the event subscribers
    /// (alerts, figures) finish (a no-op through a daemon).
    pub async fn finish(&self) {
        if let Backend::Local { rt, .. } = self {
            crate::process::finish(rt).await;
        }
    }
}
