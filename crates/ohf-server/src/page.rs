//! The status page at `/`: one HTML page with its script and style, embedded in the binary (no
//! CDN, nothing to install). The page itself holds no figures; its script asks `POST /rpc`
//! `getOverview` with the reader's token, so the page shows nothing the API would not.

use axum::Router;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;

const HTML: &str = include_str!("page/index.html");
const SCRIPT: &str = include_str!("page/page.js");
const STYLE: &str = include_str!("page/page.css");

/// Only this daemon's own script, style and API; no frames, no other origin.
const POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; \
                      form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

fn asset(content_type: &'static str, body: &'static str) -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CONTENT_SECURITY_POLICY, POLICY),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
}

/// `/`, `/ui/page.js` and `/ui/page.css`.
pub fn routes() -> Router {
    Router::new()
        .route("/", get(|| async { asset("text/html; charset=utf-8", HTML) }))
        .route("/ui/page.js", get(|| async { asset("text/javascript; charset=utf-8", SCRIPT) }))
        .route("/ui/page.css", get(|| async { asset("text/css; charset=utf-8", STYLE) }))
}
