//! EC2 instances as ohf observes them.

use std::collections::BTreeMap;

use aws_sdk_ec2::types::{Instance, InstanceLifecycleType, InstanceStateName};
use ohf_app::ports::tag_keys;
use ohf_domain::{MachineId, MachineObservation, MachineStatus, PriceType, ProviderName, RequestId, Timestamp};

pub fn status(state: &InstanceStateName) -> MachineStatus {
    match state {
        InstanceStateName::Pending => MachineStatus::Pending,
        InstanceStateName::Running => MachineStatus::Running,
        InstanceStateName::Stopping => MachineStatus::Stopping,
        InstanceStateName::Stopped => MachineStatus::Stopped,
        InstanceStateName::ShuttingDown => MachineStatus::ShuttingDown,
        _ => MachineStatus::Terminated,
    }
}

/// The value of an instance's tag `key`.
pub fn tag<'a>(i: &'a Instance, key: &str) -> Option<&'a str> {
    i.tags().iter().find(|t| t.key() == Some(key)).and_then(|t| t.value())
}

fn non_empty(s: Option<&str>) -> Option<String> {
    s.filter(|s| !s.is_empty()).map(String::from)
}

pub fn observation(provider: &ProviderName, i: &Instance) -> Option<MachineObservation> {
    let id = MachineId::new(i.instance_id()?.to_owned()).ok()?;
    let tags: BTreeMap<String, String> =
        i.tags().iter().filter_map(|t| Some((t.key()?.to_owned(), t.value().unwrap_or_default().to_owned()))).collect();
    let spot = i.instance_lifecycle() == Some(&InstanceLifecycleType::Spot);
    Some(MachineObservation {
        id,
        provider: provider.clone(),
        status: i.state().and_then(|s| s.name()).map(status).unwrap_or(MachineStatus::Pending),
        name: non_empty(i.private_dns_name()),
        private_ip: non_empty(i.private_ip_address()),
        public_ip: non_empty(i.public_ip_address()),
        instance_type: i.instance_type().map(|t| t.as_str().to_owned()),
        price_type: Some(if spot { PriceType::Spot } else { PriceType::Ondemand }),
        zone: non_empty(i.placement().and_then(|p| p.availability_zone())),
        launch_time: i.launch_time().map(|t| Timestamp::from_unix_millis(t.to_millis().unwrap_or(t.secs() * 1000))),
        request_id: tags.get(tag_keys::REQUEST_ID).and_then(|r| RequestId::new(r.clone()).ok()),
        tags,
        interruption_at: None,
        cloud_host_id: None,
    })
}

/// How long AWS gives a spot instance between its interruption notice and taking it back.
pub const INTERRUPTION_NOTICE_SECS: i64 = 120;

/// When AWS takes back each spot instance it has noticed for interruption: its spot request's
/// status is `marked-for-termination` (or `marked-for-stop`, `marked-for-hibernation`) since the
/// status's update time, and the instance goes two minutes after that.
pub fn interruptions(requests: &[aws_sdk_ec2::types::SpotInstanceRequest]) -> BTreeMap<String, Timestamp> {
    requests
        .iter()
        .filter_map(|r| {
            let status = r.status()?;
            if !status.code()?.starts_with("marked-for-") {
                return None;
            }
            let at = status.update_time().map_or(0, |t| t.secs());
            Some((r.instance_id()?.to_owned(), Timestamp::from_unix_millis((at + INTERRUPTION_NOTICE_SECS) * 1000)))
        })
        .collect()
}

/// The ids of `ids` that an InvalidInstanceID.NotFound message does not name.
pub fn without_missing(ids: &[String], message: &str) -> Vec<String> {
    ids.iter().filter(|id| !message.contains(id.as_str())).cloned().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marked_spot_requests_are_interruptions_two_minutes_after_their_notice() {
        use aws_sdk_ec2::types::{SpotInstanceRequest, SpotInstanceStatus};
        let request = |id: &str, code: &str| {
            SpotInstanceRequest::builder()
                .instance_id(id)
                .status(
                    SpotInstanceStatus::builder()
                        .code(code)
                        .update_time(aws_smithy_types::DateTime::from_secs(1_000))
                        .build(),
                )
                .build()
        };
        let found = interruptions(&[
            request("i-1", "marked-for-termination"),
            request("i-2", "fulfilled"),
            request("i-3", "marked-for-stop"),
        ]);
        let at = Timestamp::from_unix_millis(1_120_000);
        assert_eq!(found, BTreeMap::from([("i-1".to_owned(), at), ("i-3".to_owned(), at)]));
    }

    #[test]
    fn not_found_messages_name_the_missing_ids() {
        let ids = vec!["i-1".to_owned(), "i-2".to_owned(), "i-3".to_owned()];
        let msg = "TerminateInstances: The instance IDs 'i-1, i-3' do not exist";
        assert_eq!(without_missing(&ids, msg), ["i-2"]);
    }
}
