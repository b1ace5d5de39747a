//! `ohf mcp`: a Model Context Protocol server on stdin/stdout (the official Rust SDK, `rmcp`),
//! so an agent can operate ohf through the same JSON methods as every other client. Each tool
//! is one API method; the server runs with one role (`--role`, reader unless said) and lists and
//! answers only the methods that role may call, as the API's gate does. Through `--server`, the
//! daemon's own gate judges the token as well.

use std::sync::Arc;

use ohf_api::access::{Role, needed};
use ohf_server::Backend;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, Implementation, ListToolsResult, PaginatedRequestParams,
    ServerCapabilities, ServerConfig, Tool, ToolAnnotations,
};
use rmcp::service::{RequestContext, RoleServer};
use rmcp::{ErrorData as McpError, ServerHandler, ServiceExt};
use serde_json::{Map, Value, json};

/// A tool: the API method, what it does, its arguments (name, JSON type, description,
/// required), and whether it changes anything.
struct ToolSpec {
    method: &'static str,
    description: &'static str,
    arguments: &'static [(&'static str, &'static str, &'static str, bool)],
    changes: bool,
}

const TOOLS: &[ToolSpec] = &[
    ToolSpec {
        method: "getAvailableTemplates",
        description: "Every template with how many more machines it may have",
        arguments: &[],
        changes: false,
    },
    ToolSpec {
        method: "getTemplate",
        description: "One template, whole",
        arguments: &[("templateId", "string", "the template", true)],
        changes: false,
    },
    ToolSpec {
        method: "requestMachines",
        description: "Ask for machines of a template; answers the request, which goes on in the background",
        arguments: &[
            ("templateId", "string", "the template", true),
            ("machineCount", "integer", "how many machines", true),
            ("tags", "object", "tags for the machines (key to value)", false),
            ("priority", "string", "high, normal or low", false),
        ],
        changes: true,
    },
    ToolSpec {
        method: "getRequestStatus",
        description: "Requests with their machines and state",
        arguments: &[("requestIds", "array", "the request ids", true)],
        changes: false,
    },
    ToolSpec {
        method: "listRequests",
        description: "Recent requests, newest first",
        arguments: &[
            ("status", "array", "only these states (PENDING, IN_PROGRESS, COMPLETED, FAILED, …)", false),
            ("kind", "string", "provision or return", false),
            ("limit", "integer", "at most this many (default 100)", false),
        ],
        changes: false,
    },
    ToolSpec {
        method: "getRequestHistory",
        description: "A request's audit trail: every event with its time",
        arguments: &[("requestId", "string", "the request", true)],
        changes: false,
    },
    ToolSpec {
        method: "requestReturnMachines",
        description: "Return machines (by id or host name): they are terminated",
        arguments: &[("machines", "array", "objects with machineId or name", true)],
        changes: true,
    },
    ToolSpec {
        method: "getReturnRequests",
        description: "Machines the cloud took back or will (spot interruptions), for their scheduler",
        arguments: &[("machines", "array", "objects with machineId or name; none: all", false)],
        changes: false,
    },
    ToolSpec {
        method: "cancelRequest",
        description: "Cancel a request; machines it launched are terminated",
        arguments: &[("requestId", "string", "the request", true)],
        changes: true,
    },
    ToolSpec {
        method: "getRequestReport",
        description: "Figures of a window: counts by state, success rate, time to complete, failures, backlog, machines held, cost",
        arguments: &[("periodHours", "number", "the window until now, in hours (default 24)", false)],
        changes: false,
    },
    ToolSpec {
        method: "getOverview",
        description: "What an operator looks at first: requests by state, backlog, providers, recent failures, machines held",
        arguments: &[],
        changes: false,
    },
    ToolSpec {
        method: "getProviderHealth",
        description: "Each provider's health and circuit breakers",
        arguments: &[],
        changes: false,
    },
];

fn schema(spec: &ToolSpec) -> Map<String, Value> {
    let properties: Map<String, Value> = spec
        .arguments
        .iter()
        .map(|(name, kind, about, _)| ((*name).to_owned(), json!({"type": kind, "description": about})))
        .collect();
    let required: Vec<&str> = spec.arguments.iter().filter(|a| a.3).map(|a| a.0).collect();
    let mut schema = Map::new();
    schema.insert("type".into(), json!("object"));
    schema.insert("properties".into(), Value::Object(properties));
    schema.insert("required".into(), json!(required));
    schema
}

/// The server: a backend (this process's store, or a daemon) and the role it acts with.
#[derive(Clone)]
struct Server {
    backend: Arc<Backend>,
    role: Role,
}

impl Server {
    fn allowed(&self) -> impl Iterator<Item = &'static ToolSpec> + '_ {
        TOOLS.iter().filter(|t| needed(t.method) <= self.role)
    }
}

impl ServerHandler for Server {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new("ohf", env!("CARGO_PKG_VERSION")))
            .with_instructions(
                "ohf provisions and returns cloud machines. Ask getAvailableTemplates first, then \
                 requestMachines; follow a request with getRequestStatus; return machines with \
                 requestReturnMachines.",
            )
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, McpError> {
        let tools = self
            .allowed()
            .map(|t| {
                let mut tool = Tool::new(t.method, t.description, Arc::new(schema(t)));
                tool.annotations = Some(ToolAnnotations::new().read_only(!t.changes).destructive(t.changes));
                tool
            })
            .collect();
        Ok(ListToolsResult::with_all_items(tools))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, McpError> {
        let name = request.name.as_ref();
        let Some(spec) = TOOLS.iter().find(|t| t.method == name) else {
            return Err(McpError::invalid_params(format!("no tool '{name}'"), None));
        };
        if needed(spec.method) > self.role {
            let error = json!({"code": "PERMISSION_DENIED", "message": format!(
                "{} needs the {:?} role; this server runs as {:?} (ohf mcp --role)", spec.method, needed(spec.method), self.role
            )});
            return Ok(CallToolResult::structured_error(json!({"error": error})).into());
        }
        let params = Value::Object(request.arguments.unwrap_or_default());
        Ok(match self.backend.call(spec.method, params).await {
            Ok(answer) => CallToolResult::structured(answer),
            Err(e) => {
                let error = match e.downcast_ref::<ohf_api::ApiError>() {
                    Some(api) => json!({"code": api.code.as_str(), "message": api.message, "details": api.details}),
                    None => json!({"code": "INTERNAL_ERROR", "message": format!("{e:#}")}),
                };
                CallToolResult::structured_error(json!({"error": error}))
            }
        }
        .into())
    }
}

/// Serves MCP on stdin/stdout until the client closes them.
pub async fn run(backend: Backend, role: Role) -> anyhow::Result<()> {
    let backend = Arc::new(backend);
    let server = Server { backend: backend.clone(), role };
    let running = server.serve(rmcp::transport::stdio()).await.map_err(|e| anyhow::anyhow!("mcp: {e}"))?;
    running.waiting().await.map_err(|e| anyhow::anyhow!("mcp: {e}"))?;
    backend.finish().await;
    Ok(())
}
