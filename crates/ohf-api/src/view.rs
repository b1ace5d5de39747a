//! Requests as clients see them, in the field names of the request-management seed. Every
//! ingress (CLI JSON, HTTP, gRPC) renders through here.

use ohf_domain::{EventEnvelope, Request};
use serde_json::{Value, json};

/// This host's time now, for what views say about the present (whether a request is busy).
pub fn wall_clock() -> ohf_domain::Timestamp {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
    ohf_domain::Timestamp::from_unix_millis(now)
}

pub fn request_view(r: &Request) -> Value {
    let machines: Vec<Value> = r
        .machines()
        .iter()
        .map(|m| {
            let (result, message) = r.hf_machine_result(m);
            json!({
                "machineId": m.id().as_str(),
                "name": m.name(),
                "status": m.status().as_str(),
                "result": result.as_str(),
                "privateIpAddress": m.private_ip(),
                "publicIpAddress": m.public_ip(),
                "instanceType": m.instance_type(),
                "availabilityZone": m.zone(),
                "priceType": m.price_type().map(|p| p.as_str()),
                "provider": m.provider().as_str(),
                "launchTime": m.launch_time().map(|t| t.to_rfc3339()),
                "message": message,
            })
        })
        .collect();
    let mut view = json!({
        "requestId": r.id().as_str(),
        "kind": r.kind().as_str(),
        "status": r.state().as_str(),
        "templateId": r.template().map(|t| t.id().as_str()),
        "machineCount": r.count(),
        "machines": machines,
        "provider": r.provider().map(|p| p.as_str()),
        "priority": r.priority().to_string(),
        "requester": r.requester(),
        "timeout": r.timeout().get(),
        "createdAt": r.created_at().to_rfc3339(),
        "updatedAt": r.updated_at().to_rfc3339(),
        "completedAt": r.completed_at().map(|t| t.to_rfc3339()),
        "errorMessage": r.error(),
        "tags": r.tags(),
        "metadata": r.metadata(),
        "launchAttempts": r.launch_attempts(),
    });
    if let Value::Object(fields) = &mut view {
        // A draining return says until when its machines stay.
        if let Some(until) = r.drain_until() {
            fields.insert("drainUntil".into(), json!(until.to_rfc3339()));
        }
        // Busy (a cloud call under way, machines going, a drain): when to look again.
        let busy = r.busy_for(wall_clock());
        fields.insert("busy".into(), json!(busy.is_some()));
        if let Some(secs) = busy {
            fields.insert("retryAfterSeconds".into(), json!(secs));
        }
    }
    view
}

pub fn event_view(e: &EventEnvelope) -> Value {
    json!({
        "requestId": e.request_id.as_str(),
        "seq": e.seq,
        "at": e.at.to_rfc3339(),
        "by": e.by,
        "event": e.event,
    })
}

pub fn reconcile_view(r: &ohf_app::ReconcileReport) -> Value {
    json!({
        "examined": r.examined, "changed": r.changed, "describeCalls": r.describe_calls,
        "launchCalls": r.launch_calls, "terminateCalls": r.terminate_calls,
        "conflicts": r.conflicts, "errors": r.errors,
    })
}

pub fn sweep_view(r: &ohf_app::SweepReport) -> Value {
    json!({
        "examined": r.examined,
        "foreign": r.foreign,
        "dryRun": r.dry_run,
        "orphans": r.orphans.iter().map(|(id, why)| json!({"machineId": id.as_str(), "reason": why})).collect::<Vec<_>>(),
        "terminated": r.terminated.iter().map(|(id, why)| json!({"machineId": id.as_str(), "reason": why})).collect::<Vec<_>>(),
        "refused": r.refused,
        "launchTemplatesDeleted": r.pruned,
        "errors": r.errors,
    })
}

/// A template with how many more machines it may have (-1: unlimited).
pub fn template_view(a: &ohf_app::TemplateAvailability) -> Value {
    json!({
        "templateId": a.template.id().as_str(),
        "maxNumber": a.template.max_number().map_or(-1, i64::from),
        "availableNumber": a.available.map_or(-1, i64::from),
        "template": a.template.to_hf(),
    })
}
