//! Callbacks over HTTP: a request's view posted to the URL its metadata names, signed with the
//! configured secret.

use std::time::Duration;

use async_trait::async_trait;
use hmac::{Hmac, Mac};
use ohf_app::CallbackSender;
use ohf_domain::{Request, RequestState};
use reqwest::header::CONTENT_TYPE;
use serde_json::json;
use sha2::Sha256;

/// The header carrying the body's signature.
pub const SIGNATURE_HEADER: &str = "x-ohf-signature";

/// Posts callbacks with reqwest.
pub struct HttpCallbacks {
    /// Made at the first callback: building a client reads the system's root certificates,
    /// which a Host Factory call that posts nothing should not pay for.
    http: std::sync::OnceLock<Result<reqwest::Client, String>>,
    secret: Option<String>,
}

impl HttpCallbacks {
    /// A sender signing with `secret` when one is given.
    pub fn new(secret: Option<String>) -> anyhow::Result<Self> {
        Ok(Self { http: std::sync::OnceLock::new(), secret: secret.filter(|s| !s.is_empty()) })
    }

    fn client(&self) -> Result<&reqwest::Client, String> {
        self.http
            .get_or_init(|| {
                reqwest::Client::builder()
                    .connect_timeout(Duration::from_secs(5))
                    .timeout(ohf_app::lifecycle::CALLBACK_TIMEOUT)
                    .redirect(reqwest::redirect::Policy::none())
                    .build()
                    .map_err(|e| format!("cannot set up the HTTP client: {e}"))
            })
            .as_ref()
            .map_err(Clone::clone)
    }
}

/// `sha256=<hex>` of the HMAC-SHA256 of `body` under `secret`: what a receiver recomputes.
pub fn signature(secret: &str, body: &[u8]) -> Result<String, String> {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes()).map_err(|e| e.to_string())?;
    mac.update(body);
    let hex: String = mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect();
    Ok(format!("sha256={hex}"))
}

#[async_trait]
impl CallbackSender for HttpCallbacks {
    async fn post(&self, url: &str, event: RequestState, request: &Request) -> Result<(), String> {
        let body = json!({"event": event.as_str(), "request": ohf_api::view::request_view(request)});
        let body = serde_json::to_vec(&body).map_err(|e| e.to_string())?;
        let mut call = self
            .client()?
            .post(url)
            .header(CONTENT_TYPE, "application/json")
            .header("x-ohf-event", event.as_str())
            .header("x-ohf-delivery", format!("{}/{}", request.id(), event.as_str()));
        if let Some(secret) = &self.secret {
            call = call.header(SIGNATURE_HEADER, signature(secret, &body)?);
        }
        let answer = call.body(body).send().await.map_err(|e| format!("{e}"))?;
        if answer.status().is_success() { Ok(()) } else { Err(format!("the receiver answered {}", answer.status())) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_is_the_rfc_4231_hmac() {
        // RFC 4231, test case 2.
        assert_eq!(
            signature("Jefe", b"what do ya want for nothing?").unwrap(),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
