//! Domain values to and from their protobuf messages.

use std::collections::BTreeMap;

use ohf_app::TemplateAvailability;
use ohf_domain::{EventEnvelope, Request, RequestKind, RequestState, Timestamp};
use prost_types::value::Kind;
use serde_json::Value;

use crate::pb;

pub fn timestamp(t: Timestamp) -> prost_types::Timestamp {
    let ms = t.unix_millis();
    prost_types::Timestamp { seconds: ms.div_euclid(1000), nanos: (ms.rem_euclid(1000) * 1_000_000) as i32 }
}

pub fn state(s: RequestState) -> pb::RequestState {
    match s {
        RequestState::Pending => pb::RequestState::Pending,
        RequestState::InProgress => pb::RequestState::InProgress,
        RequestState::Completed => pb::RequestState::Completed,
        RequestState::Failed => pb::RequestState::Failed,
        RequestState::Timeout => pb::RequestState::Timeout,
        RequestState::Cancelled => pb::RequestState::Cancelled,
        RequestState::PartialSuccess => pb::RequestState::PartialSuccess,
        RequestState::Rejected => pb::RequestState::Rejected,
    }
}

pub fn state_from(s: pb::RequestState) -> Option<RequestState> {
    Some(match s {
        pb::RequestState::Unspecified => return None,
        pb::RequestState::Pending => RequestState::Pending,
        pb::RequestState::InProgress => RequestState::InProgress,
        pb::RequestState::Completed => RequestState::Completed,
        pb::RequestState::Failed => RequestState::Failed,
        pb::RequestState::Timeout => RequestState::Timeout,
        pb::RequestState::Cancelled => RequestState::Cancelled,
        pb::RequestState::PartialSuccess => RequestState::PartialSuccess,
        pb::RequestState::Rejected => RequestState::Rejected,
    })
}

pub fn kind(k: RequestKind) -> pb::RequestKind {
    match k {
        RequestKind::Provision => pb::RequestKind::Provision,
        RequestKind::Return => pb::RequestKind::Return,
    }
}

pub fn request(r: &Request) -> pb::Request {
    let busy = r.busy_for(ohf_api::view::wall_clock());
    let machines = r
        .machines()
        .iter()
        .map(|m| {
            let (result, message) = r.hf_machine_result(m);
            pb::Machine {
                machine_id: m.id().to_string(),
                name: m.name().unwrap_or_default().to_owned(),
                status: m.status().as_str().to_owned(),
                result: result.as_str().to_owned(),
                private_ip_address: m.private_ip().unwrap_or_default().to_owned(),
                public_ip_address: m.public_ip().unwrap_or_default().to_owned(),
                instance_type: m.instance_type().unwrap_or_default().to_owned(),
                availability_zone: m.zone().unwrap_or_default().to_owned(),
                price_type: m.price_type().map(|p| p.as_str().to_owned()).unwrap_or_default(),
                provider: m.provider().to_string(),
                launch_time: m.launch_time().map(timestamp),
                message,
            }
        })
        .collect();
    pb::Request {
        request_id: r.id().to_string(),
        kind: kind(r.kind()) as i32,
        status: state(r.state()) as i32,
        template_id: r.template().map(|t| t.id().to_string()).unwrap_or_default(),
        machine_count: r.count(),
        machines,
        provider: r.provider().map(|p| p.to_string()).unwrap_or_default(),
        priority: r.priority().to_string(),
        timeout_seconds: r.timeout().get(),
        created_at: Some(timestamp(r.created_at())),
        updated_at: Some(timestamp(r.updated_at())),
        completed_at: r.completed_at().map(timestamp),
        error_message: r.error().unwrap_or_default().to_owned(),
        tags: r.tags().iter().map(|(k, v)| (k.to_owned(), v.to_owned())).collect(),
        metadata: Some(to_struct(r.metadata().iter().map(|(k, v)| (k.clone(), v.clone())))),
        launch_attempts: r.launch_attempts(),
        requester: r.requester().unwrap_or_default().to_owned(),
        busy: busy.is_some(),
        retry_after_seconds: busy.map_or(0, |s| u32::try_from(s).unwrap_or(u32::MAX)),
    }
}

pub fn event(e: &EventEnvelope) -> pb::RequestEvent {
    let data = match serde_json::to_value(&e.event) {
        Ok(Value::Object(fields)) => fields.into_iter().filter(|(k, _)| k != "type").collect(),
        _ => BTreeMap::new(),
    };
    pb::RequestEvent {
        request_id: e.request_id.to_string(),
        seq: e.seq,
        at: Some(timestamp(e.at)),
        r#type: e.event.name().to_owned(),
        data: Some(to_struct(data)),
        by: e.by.clone().unwrap_or_default(),
    }
}

pub fn template(a: &TemplateAvailability) -> pb::TemplateInfo {
    let unlimited = -1;
    pb::TemplateInfo {
        template_id: a.template.id().to_string(),
        max_number: a.template.max_number().map_or(unlimited, |n| n as i32),
        available_number: a.available.map_or(unlimited, |n| n as i32),
        template: Some(object(&a.template.to_hf())),
    }
}

/// A serializable value as a protobuf Struct (an empty one when it is not an object).
pub fn object(value: &impl serde::Serialize) -> prost_types::Struct {
    match serde_json::to_value(value) {
        Ok(Value::Object(fields)) => to_struct(fields),
        _ => prost_types::Struct::default(),
    }
}

pub fn to_struct(fields: impl IntoIterator<Item = (String, Value)>) -> prost_types::Struct {
    prost_types::Struct { fields: fields.into_iter().map(|(k, v)| (k, to_value(v))).collect() }
}

fn to_value(v: Value) -> prost_types::Value {
    let kind = match v {
        Value::Null => Kind::NullValue(0),
        Value::Bool(b) => Kind::BoolValue(b),
        Value::Number(n) => Kind::NumberValue(n.as_f64().unwrap_or_default()),
        Value::String(s) => Kind::StringValue(s),
        Value::Array(items) => {
            Kind::ListValue(prost_types::ListValue { values: items.into_iter().map(to_value).collect() })
        }
        Value::Object(fields) => Kind::StructValue(to_struct(fields)),
    };
    prost_types::Value { kind: Some(kind) }
}

/// A protobuf Struct as JSON. Whole numbers come back as integers: protobuf has only doubles,
/// and ohf's documents (templates, metadata) mean integers where they write them.
pub fn from_struct(s: &prost_types::Struct) -> Value {
    Value::Object(s.fields.iter().map(|(k, v)| (k.clone(), from_value(v))).collect())
}

fn from_value(v: &prost_types::Value) -> Value {
    match &v.kind {
        None | Some(Kind::NullValue(_)) => Value::Null,
        Some(Kind::BoolValue(b)) => Value::Bool(*b),
        Some(Kind::NumberValue(n)) if n.fract() == 0.0 && n.abs() < 9.0e15 => Value::from(*n as i64),
        Some(Kind::NumberValue(n)) => serde_json::Number::from_f64(*n).map_or(Value::Null, Value::Number),
        Some(Kind::StringValue(s)) => Value::String(s.clone()),
        Some(Kind::ListValue(l)) => Value::Array(l.values.iter().map(from_value).collect()),
        Some(Kind::StructValue(s)) => from_struct(s),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn json_survives_a_round_trip_through_struct() {
        let doc = json!({"a": 1, "b": [true, null, "x", 2.5], "c": {"d": -3}});
        let Value::Object(fields) = doc.clone() else { unreachable!() };
        assert_eq!(from_struct(&to_struct(fields)), doc);
    }

    #[test]
    fn timestamps_keep_their_millis() {
        let t = timestamp(Timestamp::from_unix_millis(1_700_000_000_123));
        assert_eq!((t.seconds, t.nanos), (1_700_000_000, 123_000_000));
    }
}
