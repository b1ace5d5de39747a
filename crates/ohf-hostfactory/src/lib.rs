//! The Host Factory provider contract on top of ohf-app: parses the five scripts' inputs in
//! every form Host Factory and the LSF resource connector send, and renders their outputs.

use std::borrow::Cow;
use std::collections::BTreeMap;

use ohf_app::queries::{GetAvailableTemplates, GetRequestStatus, GetReturnNotices};
use ohf_app::{App, AppError, MachineRef, RequestMachines, RequestReturn};
use ohf_domain::{Machine, Request, RequestId};
use serde::Serialize;
use serde::ser::{SerializeStruct, Serializer};
use serde_json::{Map, Value, json};

/// The five provider operations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    GetAvailableTemplates,
    RequestMachines,
    RequestReturnMachines,
    GetRequestStatus,
    GetReturnRequests,
}

impl Operation {
    pub const ALL: [Operation; 5] = [
        Self::GetAvailableTemplates,
        Self::RequestMachines,
        Self::RequestReturnMachines,
        Self::GetRequestStatus,
        Self::GetReturnRequests,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Self::GetAvailableTemplates => "getAvailableTemplates",
            Self::RequestMachines => "requestMachines",
            Self::RequestReturnMachines => "requestReturnMachines",
            Self::GetRequestStatus => "getRequestStatus",
            Self::GetReturnRequests => "getReturnRequests",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|op| op.name().eq_ignore_ascii_case(name))
    }
}

/// A failed operation: Host Factory gets `{"message": …}` and a non-zero exit.
#[derive(Debug, thiserror::Error)]
pub enum HfError {
    #[error("invalid input: {0}")]
    Input(String),
    #[error("{0}")]
    App(#[from] AppError),
}

impl HfError {
    /// The JSON document Host Factory reads on failure.
    pub fn to_json(&self) -> Value {
        json!({"message": self.to_string()})
    }
}

/// Parses a script's input; empty input is `{}`.
pub fn parse_input(text: &str) -> Result<Value, HfError> {
    if text.trim().is_empty() {
        return Ok(json!({}));
    }
    let value: Value = serde_json::from_str(text).map_err(|e| HfError::Input(format!("not valid JSON: {e}")))?;
    if !value.is_object() {
        return Err(HfError::Input("the input must be a JSON object".into()));
    }
    Ok(value)
}

/// How the operations behave.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Options {
    /// getRequestStatus advances the requests it names before answering (no daemon needed).
    pub advance_on_poll: bool,
    /// Who runs the operation (the OS user running the script, or the token's name on the
    /// daemon): recorded as the requester of the requests and returns it makes.
    pub requester: Option<String>,
}

/// What an operation answers: a JSON document, or the status of requests written straight from
/// the requests (no document built in between; the text is the same).
#[derive(Debug)]
pub enum Answer {
    Document(Value),
    Status(StatusAnswer),
}

impl From<Value> for Answer {
    fn from(doc: Value) -> Self {
        Answer::Document(doc)
    }
}

impl Answer {
    /// The answer as a script prints it: JSON indented by two spaces, keys in sorted order.
    pub fn to_pretty(&self) -> serde_json::Result<Vec<u8>> {
        match self {
            Answer::Document(doc) => serde_json::to_vec_pretty(doc),
            Answer::Status(status) => Ok(status.pretty()),
        }
    }
}

impl Serialize for Answer {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Answer::Document(doc) => doc.serialize(s),
            Answer::Status(status) => status.serialize(s),
        }
    }
}

/// Runs one operation on parsed input.
pub async fn run(app: &App, op: Operation, input: &Value, options: Options) -> Result<Answer, HfError> {
    match op {
        Operation::GetAvailableTemplates => get_available_templates(app).await.map(Answer::from),
        Operation::RequestMachines => request_machines(app, input, options.requester).await.map(Answer::from),
        Operation::RequestReturnMachines => {
            request_return_machines(app, input, options.requester).await.map(Answer::from)
        }
        Operation::GetRequestStatus => get_request_status(app, input, options).await.map(Answer::Status),
        Operation::GetReturnRequests => get_return_requests(app, input).await.map(Answer::from),
    }
}

/// A list, or a single object standing for a list of one.
fn one_or_many<'a>(value: Option<&'a Value>, field: &str) -> Result<Vec<&'a Value>, HfError> {
    match value {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(items)) => Ok(items.iter().collect()),
        Some(obj @ Value::Object(_)) => Ok(vec![obj]),
        Some(_) => Err(HfError::Input(format!("\"{field}\" must be a list or an object"))),
    }
}

fn text_field(obj: &Value, keys: &[&str]) -> Option<String> {
    keys.iter().find_map(|k| obj.get(*k)).and_then(|v| match v {
        Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_owned()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    })
}

pub async fn get_available_templates(app: &App) -> Result<Value, HfError> {
    let templates = app.ask(GetAvailableTemplates).await?;
    let rendered: Vec<Value> = templates
        .iter()
        .map(|a| {
            let t = &a.template;
            let attributes: Map<String, Value> =
                t.attributes().iter().map(|(k, v)| (k.clone(), json!([v.kind.as_str(), v.value]))).collect();
            let mut out = json!({
                "templateId": t.id().as_str(),
                "maxNumber": t.max_number().map_or(-1, i64::from),
                "attributes": attributes,
                "priceType": t.price_type().as_str(),
                "providerApi": t.provider_api().as_str(),
            });
            if let Some(n) = a.available {
                out["availableNumber"] = json!(n);
            }
            if !t.vm_types().is_empty() {
                out["vmTypes"] = json!(t.vm_types());
            }
            if let Some(image) = t.image_id() {
                out["imageId"] = json!(image);
            }
            if !t.instance_tags().is_empty() {
                out["instanceTags"] = json!(t.instance_tags().to_hf());
            }
            out
        })
        .collect();
    Ok(json!({"message": "Get available templates success.", "templates": rendered}))
}

fn whole_number(v: &Value, field: &str) -> Result<i64, HfError> {
    match v {
        Value::Number(n) => {
            n.as_i64().ok_or_else(|| HfError::Input(format!("\"{field}\" must be a whole number, got {n}")))
        }
        Value::String(s) => {
            s.trim().parse().map_err(|_| HfError::Input(format!("\"{field}\" must be a whole number, got \"{s}\"")))
        }
        other => Err(HfError::Input(format!("\"{field}\" must be a whole number, got {other}"))),
    }
}

pub async fn request_machines(app: &App, input: &Value, requester: Option<String>) -> Result<Value, HfError> {
    let template = input
        .get("template")
        .filter(|t| t.is_object())
        .ok_or_else(|| HfError::Input("expected {\"template\": {\"templateId\": …, \"machineCount\": …}}".into()))?;
    let template_id =
        text_field(template, &["templateId"]).ok_or_else(|| HfError::Input("\"templateId\" is required".into()))?;
    let count = whole_number(template.get("machineCount").unwrap_or(&Value::Null), "machineCount")?;
    let mut tags = BTreeMap::new();
    let mut metadata = BTreeMap::new();
    if let Some(account) = text_field(template, &["rc_account"]).or_else(|| text_field(input, &["rc_account"])) {
        tags.insert("rc_account".to_owned(), account.clone());
        metadata.insert("rc_account".to_owned(), json!(account));
    }
    if let Some(user_data) = template.get("userData").or_else(|| input.get("userData")).filter(|v| !v.is_null()) {
        metadata.insert("userData".to_owned(), user_data.clone());
    }
    let cmd = RequestMachines { template_id, count, tags, metadata, requester, ..Default::default() };
    let request = app.execute(cmd).await?;
    Ok(json!({
        "requestId": request.id().as_str(),
        "message": format!("Request VM success from ohf: {} machines of {}.", request.count(),
            request.template().map(|t| t.id().as_str()).unwrap_or_default()),
    }))
}

fn machine_refs(input: &Value) -> Result<Vec<MachineRef>, HfError> {
    one_or_many(input.get("machines"), "machines")?
        .into_iter()
        .map(|m| {
            if !m.is_object() {
                return Err(HfError::Input("each machine must be an object with \"name\" or \"machineId\"".into()));
            }
            Ok(MachineRef { id: text_field(m, &["machineId", "machine_id"]), name: text_field(m, &["name"]) })
        })
        .collect()
}

pub async fn request_return_machines(app: &App, input: &Value, requester: Option<String>) -> Result<Value, HfError> {
    let machines = machine_refs(input)?;
    if machines.is_empty() {
        return Err(HfError::Input(
            "expected {\"machines\": [{\"name\": …, \"machineId\": …}]} with at least one machine".into(),
        ));
    }
    if machines.iter().any(|m| m.id.is_none() && m.name.is_none()) {
        return Err(HfError::Input("each machine needs a \"name\" or a \"machineId\"".into()));
    }
    let request = app.execute(RequestReturn { machines, requester, ..Default::default() }).await?;
    Ok(json!({"requestId": request.id().as_str(), "message": "Delete VM success."}))
}

/// The machine's tags Host Factory shows (`key=value;…`): not ohf's own, not `Name`.
fn user_tags(m: &Machine) -> String {
    let mut text = String::new();
    for (k, v) in m.tags().iter().filter(|(k, _)| !k.starts_with("ohf:") && k.as_str() != "Name") {
        if !text.is_empty() {
            text.push(';');
        }
        text.push_str(k);
        text.push('=');
        text.push_str(v);
    }
    text
}

/// getRequestStatus's answer: each request asked about, `None` when ohf does not know it.
#[derive(Debug)]
pub struct StatusAnswer(Vec<(String, Option<Request>)>);

impl StatusAnswer {
    /// Each request in Host Factory's status form, in the order asked.
    fn statuses(&self) -> impl Iterator<Item = RequestStatus<'_>> {
        self.0.iter().map(|(id, r)| match r {
            Some(r) => RequestStatus {
                machines: Machines(Some(r)),
                message: Cow::Borrowed(r.error().unwrap_or_default()),
                request_id: r.id().as_str(),
                status: r.hf_status(),
            },
            None => RequestStatus {
                machines: Machines(None),
                message: Cow::Owned(format!("request '{id}' not found")),
                request_id: id,
                status: "complete_with_error",
            },
        })
    }

    /// The answer as `serde_json::to_vec_pretty` writes it, byte for byte, written straight:
    /// the keys and the indentation are constants here, and a value is escaped only when it
    /// holds a character JSON escapes. (A script prints 100 requests of 10 machines; through
    /// the serializer every key was escaped and every level of indentation written apart.)
    fn pretty(&self) -> Vec<u8> {
        let machines: usize = self.0.iter().map(|(_, r)| r.as_ref().map_or(0, |r| r.machines().len())).sum();
        let mut out = Vec::with_capacity(64 + 160 * self.0.len() + 480 * machines);
        out.extend_from_slice(b"{\n  \"requests\": [");
        for (i, request) in self.statuses().enumerate() {
            out.extend_from_slice(if i == 0 { b"\n    {" } else { b",\n    {" });
            out.extend_from_slice(b"\n      \"machines\": [");
            let mut any = false;
            for m in request.machines.statuses() {
                out.extend_from_slice(if any { b",\n        {" } else { b"\n        {" });
                any = true;
                const AT: &[u8] = b"\n          \"";
                key(&mut out, true, AT, "cloudHostId");
                optional(&mut out, m.cloud_host_id);
                key(&mut out, false, AT, "instanceTags");
                text(&mut out, &m.instance_tags);
                key(&mut out, false, AT, "instanceType");
                optional(&mut out, m.instance_type);
                key(&mut out, false, AT, "launchtime");
                out.extend_from_slice(m.launchtime.to_string().as_bytes());
                key(&mut out, false, AT, "machineId");
                text(&mut out, m.machine_id);
                key(&mut out, false, AT, "message");
                text(&mut out, &m.message);
                key(&mut out, false, AT, "name");
                text(&mut out, m.name);
                key(&mut out, false, AT, "priceType");
                optional(&mut out, m.price_type);
                key(&mut out, false, AT, "privateIpAddress");
                optional(&mut out, m.private_ip_address);
                key(&mut out, false, AT, "publicIpAddress");
                optional(&mut out, m.public_ip_address);
                key(&mut out, false, AT, "result");
                text(&mut out, m.result);
                key(&mut out, false, AT, "status");
                text(&mut out, m.status);
                out.extend_from_slice(b"\n        }");
            }
            out.extend_from_slice(if any { b"\n      ]" } else { b"]" });
            const AT: &[u8] = b"\n      \"";
            key(&mut out, false, AT, "message");
            text(&mut out, &request.message);
            key(&mut out, false, AT, "requestId");
            text(&mut out, request.request_id);
            key(&mut out, false, AT, "status");
            text(&mut out, request.status);
            out.extend_from_slice(b"\n    }");
        }
        out.extend_from_slice(if self.0.is_empty() { b"]\n}" } else { b"\n  ]\n}" });
        out
    }
}

/// Writes a key of an object at indentation `at` (a newline, the spaces, the opening quote).
fn key(out: &mut Vec<u8>, first: bool, at: &[u8], name: &str) {
    if !first {
        out.push(b',');
    }
    out.extend_from_slice(at);
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b"\": ");
}

/// Writes a string value as JSON does.
fn text(out: &mut Vec<u8>, value: &str) {
    if value.bytes().any(|b| b < 0x20 || b == b'"' || b == b'\\') {
        // Writing into memory cannot fail.
        let _ = serde_json::to_writer(&mut *out, value);
    } else {
        out.push(b'"');
        out.extend_from_slice(value.as_bytes());
        out.push(b'"');
    }
}

/// Writes a string value, or `null`.
fn optional(out: &mut Vec<u8>, value: Option<&str>) {
    match value {
        Some(v) => text(out, v),
        None => out.extend_from_slice(b"null"),
    }
}

impl Serialize for StatusAnswer {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut doc = s.serialize_struct("StatusAnswer", 1)?;
        doc.serialize_field("requests", &Statuses(self))?;
        doc.end()
    }
}

/// The requests' statuses, each written as it is reached.
struct Statuses<'a>(&'a StatusAnswer);

impl Serialize for Statuses<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.statuses())
    }
}

/// One request in Host Factory's status form. The fields are in the order a JSON map sorts
/// its keys, the order the answer has always been printed in.
#[derive(Serialize)]
struct RequestStatus<'a> {
    machines: Machines<'a>,
    message: Cow<'a, str>,
    #[serde(rename = "requestId")]
    request_id: &'a str,
    status: &'static str,
}

/// The machines of a request (none for a request ohf does not know).
struct Machines<'a>(Option<&'a Request>);

impl<'a> Machines<'a> {
    /// Each machine in Host Factory's status form.
    fn statuses(&self) -> impl Iterator<Item = MachineStatus<'a>> + use<'a> {
        let r = self.0;
        let template_price = r.and_then(|r| r.template()).map(|t| t.price_type());
        r.into_iter().flat_map(|r| r.machines().iter().map(move |m| (r, m))).map(move |(r, m)| {
            let (result, message) = r.hf_machine_result(m);
            MachineStatus {
                cloud_host_id: m.cloud_host_id(),
                instance_tags: user_tags(m),
                instance_type: m.instance_type(),
                launchtime: m.launch_time().unwrap_or(r.created_at()).unix_secs(),
                machine_id: m.id().as_str(),
                message,
                name: m.name().unwrap_or_default(),
                price_type: m.price_type().or(template_price).map(|p| p.as_str()),
                private_ip_address: m.private_ip(),
                public_ip_address: m.public_ip(),
                result: result.as_str(),
                status: m.status().as_str(),
            }
        })
    }
}

impl Serialize for Machines<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.statuses())
    }
}

/// One machine in Host Factory's status form, its fields in sorted order as above.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct MachineStatus<'a> {
    cloud_host_id: Option<&'a str>,
    instance_tags: String,
    instance_type: Option<&'a str>,
    launchtime: i64,
    machine_id: &'a str,
    message: String,
    name: &'a str,
    price_type: Option<&'static str>,
    private_ip_address: Option<&'a str>,
    public_ip_address: Option<&'a str>,
    result: &'static str,
    status: &'static str,
}

pub async fn get_request_status(app: &App, input: &Value, options: Options) -> Result<StatusAnswer, HfError> {
    let ids: Vec<String> = one_or_many(input.get("requests"), "requests")?
        .into_iter()
        .map(|r| {
            text_field(r, &["requestId", "request_id"])
                .ok_or_else(|| HfError::Input("each request needs a \"requestId\"".into()))
        })
        .collect::<Result<_, _>>()?;
    if ids.is_empty() {
        return Err(HfError::Input("expected {\"requests\": [{\"requestId\": …}]} with at least one request".into()));
    }
    // Each poll advances the lifecycle: the same step the daemon runs in the background.
    if options.advance_on_poll {
        let valid: Vec<RequestId> = ids.iter().filter_map(|i| RequestId::new(i.clone()).ok()).collect();
        ohf_api::poll::advance(app, Some(&valid)).await;
    }
    Ok(StatusAnswer(app.ask(GetRequestStatus { request_ids: ids }).await?))
}

pub async fn get_return_requests(app: &App, input: &Value) -> Result<Value, HfError> {
    let known = machine_refs(input)?;
    let notices = app.ask(GetReturnNotices { known: known.to_vec() }).await?;
    let requests: Vec<Value> =
        notices.iter().map(|n| json!({"machine": n.machine, "gracePeriod": n.grace_period})).collect();
    Ok(json!({
        "status": "complete",
        "message": if requests.is_empty() { "No machines to return." } else { "Machines the cloud is taking back." },
        "requests": requests,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    mod pretty {
        use ohf_domain::testing::{T0, observed, provider, provision_spec};
        use ohf_domain::{LifecyclePolicy, MachineObservation, MachineStatus, Request};
        use proptest::prelude::*;

        use super::super::StatusAnswer;

        /// Text of every kind a machine may report: plain, quotes, backslashes, control
        /// characters, beyond ASCII.
        fn any_text() -> impl Strategy<Value = String> {
            prop_oneof![Just(String::new()), "[a-z0-9.-]{1,12}", "\\PC{0,8}", "[\"\\\\\u{0}-\u{1f}é€😀 a]{0,6}"]
        }

        /// A machine as the cloud reports it: its status, name, address and tags of the user's.
        type Seen = (MachineStatus, Option<String>, Option<String>, Vec<(String, String)>);

        fn request(n: usize, seen: Vec<Seen>) -> Request {
            let id = format!("req-{n}");
            let mut r = Request::provision(provision_spec(&id, seen.len().max(1) as u32), T0);
            let observations: Vec<MachineObservation> = seen
                .into_iter()
                .enumerate()
                .map(|(i, (status, name, ip, tags))| MachineObservation {
                    name,
                    private_ip: ip.clone(),
                    public_ip: ip,
                    tags: observed(&format!("i-{n}-{i}"), &id, status).tags.into_iter().chain(tags).collect(),
                    ..observed(&format!("i-{n}-{i}"), &id, status)
                })
                .collect();
            let _ = r.reconcile(&observations, &[provider()], T0, &LifecyclePolicy::default());
            r
        }

        fn machine() -> impl Strategy<Value = Seen> {
            let status = prop_oneof![
                Just(MachineStatus::Pending),
                Just(MachineStatus::Running),
                Just(MachineStatus::Terminated)
            ];
            (
                status,
                proptest::option::of(any_text()),
                proptest::option::of(any_text()),
                proptest::collection::vec((any_text(), any_text()), 0..3),
            )
        }

        proptest! {
            /// The script's answer written straight is what the serializer writes, byte for
            /// byte: known requests with machines or none, unknown ids, no request at all.
            #[test]
            fn the_status_answer_is_written_as_the_serializer_writes_it(
                known in proptest::collection::vec(proptest::collection::vec(machine(), 0..4), 0..4),
                unknown in proptest::collection::vec(any_text(), 0..3),
            ) {
                let mut asked: Vec<(String, Option<Request>)> = known
                    .into_iter()
                    .enumerate()
                    .map(|(n, seen)| {
                        let r = request(n, seen);
                        (r.id().to_string(), Some(r))
                    })
                    .collect();
                asked.extend(unknown.into_iter().map(|id| (id, None)));
                let answer = StatusAnswer(asked);
                let expected = serde_json::to_vec_pretty(&answer).unwrap();
                prop_assert_eq!(String::from_utf8(answer.pretty()).unwrap(), String::from_utf8(expected).unwrap());
            }
        }
    }

    #[test]
    fn inputs_parse_in_every_form() {
        assert_eq!(parse_input("").unwrap(), json!({}));
        assert!(parse_input("{").is_err());
        assert!(parse_input("[1]").is_err());
        let many = json!({"machines": [{"name": "a"}, {"machineId": "i-1"}]});
        assert_eq!(machine_refs(&many).unwrap().len(), 2);
        let one = json!({"machines": {"name": "a", "machineId": "i-1"}});
        assert_eq!(machine_refs(&one).unwrap(), vec![MachineRef { id: Some("i-1".into()), name: Some("a".into()) }]);
        assert!(machine_refs(&json!({"machines": "a"})).is_err());
        assert!(machine_refs(&json!({})).unwrap().is_empty());
    }

    #[test]
    fn counts_may_be_numbers_or_numeric_strings() {
        assert_eq!(whole_number(&json!(3), "machineCount").unwrap(), 3);
        assert_eq!(whole_number(&json!("3"), "machineCount").unwrap(), 3);
        assert!(whole_number(&json!(2.5), "machineCount").is_err());
        assert!(whole_number(&json!("three"), "machineCount").is_err());
        assert!(whole_number(&Value::Null, "machineCount").is_err());
    }

    #[test]
    fn operations_have_their_script_names() {
        for op in Operation::ALL {
            assert_eq!(Operation::parse(op.name()), Some(op));
        }
        assert_eq!(Operation::parse("nope"), None);
    }
}
