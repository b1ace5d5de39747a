//! `ohf mcp` spoken to as an MCP client does: initialize, list the tools, call them. A reader
//! sees and may call only queries; an operator requests machines and follows them to COMPLETED.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, ChildStdout, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::HfEnv;

const CONFIG: &str = "[[providers]]\nname = \"sim-1\"\ntype = \"sim\"\nlaunch_latency_ms = 0\n";

/// A running `ohf mcp` and the client's side of its pipes.
struct Session {
    child: Child,
    input: ChildStdin,
    output: BufReader<ChildStdout>,
    next: u64,
}

impl Session {
    fn start(env: &HfEnv, role: &str) -> Session {
        let mut child = env
            .ohf()
            .args(["mcp", "--role", role])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let input = child.stdin.take().unwrap();
        let output = BufReader::new(child.stdout.take().unwrap());
        let mut s = Session { child, input, output, next: 1 };
        let init = s.request(
            "initialize",
            json!({"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "test", "version": "1"}}),
        );
        assert_eq!(init["result"]["serverInfo"]["name"], "ohf", "{init}");
        assert!(init["result"]["capabilities"]["tools"].is_object(), "{init}");
        s.send(&json!({"jsonrpc": "2.0", "method": "notifications/initialized"}));
        s
    }

    fn send(&mut self, message: &Value) {
        writeln!(self.input, "{message}").unwrap();
        self.input.flush().unwrap();
    }

    /// Sends a request and reads until its answer (skipping notifications).
    fn request(&mut self, method: &str, params: Value) -> Value {
        let id = self.next;
        self.next += 1;
        self.send(&json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}));
        loop {
            let mut line = String::new();
            assert!(self.output.read_line(&mut line).unwrap() > 0, "ohf mcp closed its output");
            let message: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"));
            if message["id"] == id {
                return message;
            }
        }
    }

    fn tools(&mut self) -> Vec<String> {
        let list = self.request("tools/list", json!({}));
        list["result"]["tools"].as_array().unwrap().iter().map(|t| t["name"].as_str().unwrap().to_owned()).collect()
    }

    /// A tool's structured answer, and whether it was an error.
    fn call(&mut self, tool: &str, arguments: Value) -> (Value, bool) {
        let answer = self.request("tools/call", json!({"name": tool, "arguments": arguments}));
        let result = &answer["result"];
        assert!(result.is_object(), "{answer}");
        (result["structuredContent"].clone(), result["isError"] == true)
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn a_reader_sees_queries_only_and_is_refused_a_request() {
    let env = HfEnv::new(CONFIG);
    let mut s = Session::start(&env, "reader");
    let tools = s.tools();
    assert!(tools.contains(&"getAvailableTemplates".to_owned()) && tools.contains(&"getRequestStatus".to_owned()));
    assert!(!tools.contains(&"requestMachines".to_owned()), "{tools:?}");
    let (templates, error) = s.call("getAvailableTemplates", json!({}));
    assert!(!error, "{templates}");
    assert!(templates["templates"].as_array().unwrap().iter().any(|t| t["templateId"] == "OnDemand-Minimal"));
    let (refused, error) = s.call("requestMachines", json!({"templateId": "OnDemand-Minimal", "machineCount": 1}));
    assert!(error, "{refused}");
    assert_eq!(refused["error"]["code"], "PERMISSION_DENIED", "{refused}");
    assert!(env.stored_requests().is_empty(), "nothing was requested");
    let unknown = s.request("tools/call", json!({"name": "sweepOrphans", "arguments": {}}));
    assert!(unknown["error"].is_object(), "a tool that is not offered is a protocol error: {unknown}");
}

#[test]
fn an_operator_requests_machines_follows_them_and_gets_validation_errors_as_tool_errors() {
    let env = HfEnv::new(CONFIG);
    let mut s = Session::start(&env, "operator");
    assert!(s.tools().contains(&"requestMachines".to_owned()));
    let (created, error) = s.call("requestMachines", json!({"templateId": "OnDemand-Minimal", "machineCount": 2}));
    assert!(!error, "{created}");
    let id = created["requestId"].as_str().unwrap().to_owned();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, error) = s.call("getRequestStatus", json!({"requestIds": [id]}));
        assert!(!error, "{status}");
        let request = &status["requests"][0];
        if request["status"] == "COMPLETED" {
            assert_eq!(request["machines"].as_array().unwrap().len(), 2, "{status}");
            break;
        }
        assert!(Instant::now() < deadline, "not completed: {status}");
        std::thread::sleep(Duration::from_millis(200));
    }
    let (bad, error) = s.call("requestMachines", json!({"templateId": "OnDemand-Minimal", "machineCount": -3}));
    assert!(error, "{bad}");
    assert_eq!(bad["error"]["code"], "VALIDATION_ERROR", "{bad}");
}
