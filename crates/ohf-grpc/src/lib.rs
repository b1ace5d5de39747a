//! The gRPC API of `ohf serve` (`proto/ohf/v1`): requests, templates, provider strategy and routing, the standard
//! `grpc.health.v1` health service and server reflection. Calls pass the same gate as the HTTP
//! JSON API (tokens, roles, rate limits) and errors map through the same table
//! (`ohf_api::wire`).

mod convert;
mod providers;
mod routing;
mod service;

pub use convert::from_struct;
pub use providers::ProviderApi;
pub use routing::RoutingApi;
pub use service::{RequestApi, TemplateApi, status};

/// The generated messages, services and clients of `ohf.v1`.
pub mod pb {
    #![allow(clippy::all, missing_docs)]
    tonic::include_proto!("ohf.v1");

    /// The encoded descriptors of `proto/ohf/v1` and its imports, for reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/ohf_descriptor.bin"));
}

use std::sync::Arc;

use ohf_api::access::Gate;
use ohf_app::App;
use tonic::service::Routes;

/// The connections of `listener` as the server takes them: with Nagle's algorithm off, or
/// every small answer waits for the peer's delayed ACK (about 40 ms on Linux).
pub fn incoming(listener: tokio::net::TcpListener) -> tonic::transport::server::TcpIncoming {
    tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true))
}

/// Every gRPC service of the daemon, ready to serve beside other routes.
pub async fn routes(app: Arc<App>, gate: Arc<Gate>) -> Result<Routes, tonic_reflection::server::Error> {
    let (reporter, health) = tonic_health::server::health_reporter();
    reporter.set_serving::<pb::request_service_server::RequestServiceServer<RequestApi>>().await;
    reporter.set_serving::<pb::template_service_server::TemplateServiceServer<TemplateApi>>().await;
    reporter.set_serving::<pb::provider_strategy_service_server::ProviderStrategyServiceServer<ProviderApi>>().await;
    reporter.set_serving::<pb::routing_service_server::RoutingServiceServer<RoutingApi>>().await;
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
        .build_v1()?;
    let requests = pb::request_service_server::RequestServiceServer::new(RequestApi::new(app.clone(), gate.clone()));
    let templates =
        pb::template_service_server::TemplateServiceServer::new(TemplateApi::new(app.clone(), gate.clone()));
    let providers = pb::provider_strategy_service_server::ProviderStrategyServiceServer::new(ProviderApi::new(
        app.clone(),
        gate.clone(),
    ));
    let routing = pb::routing_service_server::RoutingServiceServer::new(RoutingApi::new(app, gate));
    Ok(Routes::new(health)
        .add_service(reflection)
        .add_service(requests)
        .add_service(templates)
        .add_service(providers)
        .add_service(routing))
}
