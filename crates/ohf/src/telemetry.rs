//! Trace export over OTLP/HTTP when `[telemetry] otlp_endpoint` is set: every span (API calls,
//! reconcile cycles, request steps, cloud calls) goes to the collector with its fields, batched
//! on a thread of the exporter's own. Off by default; nothing is built then.

use std::sync::OnceLock;
use std::time::Duration;

use ohf_server::settings::TelemetrySettings;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::SdkTracerProvider;

/// The provider in use, flushed and shut down as the process ends.
static PROVIDER: OnceLock<SdkTracerProvider> = OnceLock::new();

/// The layer that sends spans to `settings`' collector, when one is set.
pub fn layer<S>(
    settings: &TelemetrySettings,
) -> Option<tracing_opentelemetry::OpenTelemetryLayer<S, opentelemetry_sdk::trace::Tracer>>
where
    S: tracing::Subscriber + for<'span> tracing_subscriber::registry::LookupSpan<'span>,
{
    let endpoint = settings.otlp_endpoint.as_deref()?;
    let url = format!("{}/v1/traces", endpoint.trim_end_matches('/'));
    let exporter = match opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_endpoint(url.clone())
        .with_timeout(Duration::from_secs(10))
        .build()
    {
        Ok(e) => e,
        Err(e) => {
            eprintln!("warning: traces are not exported to {url}: {e}");
            return None;
        }
    };
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(Resource::builder().with_service_name(settings.service_name.clone()).build())
        .build();
    let tracer = provider.tracer("ohf");
    let _ = PROVIDER.set(provider);
    Some(tracing_opentelemetry::layer().with_tracer(tracer))
}

/// Sends what is batched and stops the exporter (at the end of the process).
pub fn shutdown() {
    if let Some(provider) = PROVIDER.get() {
        let _ = provider.force_flush();
        let _ = provider.shutdown_with_timeout(Duration::from_secs(5));
    }
}
