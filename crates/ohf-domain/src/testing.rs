//! Test support: sample values and a given/when/then helper for the request aggregate.

#![allow(clippy::unwrap_used)] // test support: panicking is how it reports

use std::collections::BTreeMap;

use serde_json::json;

use crate::{
    EventEnvelope, MachineCount, MachineId, MachineObservation, MachineStatus, Priority, ProviderName, ProvisionSpec,
    Request, RequestEvent, RequestId, RequestState, Tags, Template, TimeoutSecs, Timestamp,
};

/// 2025-06-30T12:00:00Z, the start of every scenario.
pub const T0: Timestamp = Timestamp::from_unix_secs(1_751_284_800);

/// Two Host Factory templates as `awsprov_templates.json` holds them: `OnDemand-Minimal`
/// (at most 10 machines, tagged `team=abc`) and `Spot-Compute` (spot, unlimited).
pub fn hf_templates_json() -> serde_json::Value {
    json!({"templates": [
        {"templateId": "OnDemand-Minimal", "maxNumber": 10, "imageId": "ami-1", "vmType": "m5.large", "instanceTags": "team=abc"},
        {"templateId": "Spot-Compute", "maxNumber": -1, "imageId": "ami-1", "vmTypes": {"c5.xlarge": 1}, "priceType": "spot"}
    ]})
}

/// The templates of [`hf_templates_json`].
pub fn hf_templates() -> Vec<Template> {
    Template::parse_file(&hf_templates_json().to_string()).expect("the sample templates are valid")
}

/// The provider the fixtures name (`sim-1`).
pub fn provider() -> ProviderName {
    ProviderName::new("sim-1").expect("valid name")
}

/// A valid on-demand template (`tmpl-1`) with `maxNumber` set.
pub fn template(max_number: i64) -> Template {
    Template::from_json(&json!({
        "templateId": "OnDemand-Minimal", "maxNumber": max_number, "imageId": "ami-1", "vmType": "m5.large",
        "instanceTags": "team=abc"
    }))
    .expect("valid template")
}

/// A provision request of `count` machines of [`template`]`(10)`.
pub fn provision_spec(id: &str, count: u32) -> ProvisionSpec {
    ProvisionSpec {
        id: RequestId::new(id).expect("valid id"),
        template: template(100),
        count: MachineCount::new(i64::from(count), 100).expect("valid count"),
        timeout: TimeoutSecs::DEFAULT,
        tags: Tags::default(),
        metadata: BTreeMap::new(),
        priority: Priority::Normal,
        requester: None,
        zones: Vec::new(),
        provider: provider(),
    }
}

/// A machine the simulated provider reports for `request`.
pub fn observed(id: &str, request: &str, status: MachineStatus) -> MachineObservation {
    let n = id.bytes().fold(0u32, |a, b| a.wrapping_mul(31).wrapping_add(u32::from(b))) % 250 + 1;
    MachineObservation {
        id: MachineId::new(id).expect("valid id"),
        provider: provider(),
        status,
        name: Some(format!("ip-10-0-0-{n}.ec2.internal")),
        private_ip: Some(format!("10.0.0.{n}")),
        public_ip: None,
        instance_type: Some("m5.large".into()),
        price_type: None,
        zone: Some("us-east-1a".into()),
        launch_time: Some(T0),
        request_id: Some(RequestId::new(request).expect("valid id")),
        tags: BTreeMap::new(),
        interruption_at: None,
        cloud_host_id: None,
    }
}

/// The `Created` event of a provision request.
pub fn created(id: &str, count: u32) -> RequestEvent {
    Request::provision(provision_spec(id, count), T0).uncommitted()[0].event.clone()
}

/// Starts a scenario from a history of events, all at `T0`.
pub fn given(events: Vec<RequestEvent>) -> Given {
    let history: Vec<EventEnvelope> = events
        .into_iter()
        .enumerate()
        .map(|(seq, event)| EventEnvelope {
            request_id: RequestId::new("given").expect("valid id"),
            seq: seq as u64,
            at: T0,
            event,
            by: None,
        })
        .collect();
    Given { request: Request::replay(&history).expect("history begins with Created") }
}

/// The start of a given/when/then test of a request.
pub struct Given {
    request: Request,
}

impl Given {
    /// Runs a command against the request rebuilt from the history.
    pub fn when<R>(mut self, command: impl FnOnce(&mut Request) -> R) -> Then<R> {
        let outcome = command(&mut self.request);
        Then { outcome, request: self.request }
    }
}

/// What a step did, and the request after it.
pub struct Then<R> {
    /// What the step answered.
    pub outcome: R,
    /// The request after the step.
    pub request: Request,
}

impl<R> Then<R> {
    /// The names of the events the command recorded, in order.
    pub fn event_names(&self) -> Vec<&'static str> {
        self.request.uncommitted().iter().map(|e| e.event.name()).collect()
    }

    /// Asserts the names of the events the step recorded.
    pub fn then_events(self, expected: &[&str]) -> Self {
        assert_eq!(self.event_names(), expected, "recorded events");
        self
    }

    /// Asserts the request's state.
    pub fn then_state(self, expected: RequestState) -> Self {
        assert_eq!(self.request.state(), expected, "state");
        self
    }
}
