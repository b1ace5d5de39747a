use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::{MachineId, PriceType, ProviderName, RequestId, Timestamp};

/// The cloud's state of a machine, in Host Factory's words.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MachineStatus {
    /// Launched, not yet running.
    Pending,
    /// Running.
    Running,
    /// Stopping.
    Stopping,
    /// Stopped.
    Stopped,
    /// Terminating.
    ShuttingDown,
    /// Gone.
    Terminated,
}

impl MachineStatus {
    /// Its EC2 name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Running => "running",
            Self::Stopping => "stopping",
            Self::Stopped => "stopped",
            Self::ShuttingDown => "shutting-down",
            Self::Terminated => "terminated",
        }
    }

    /// On its way out or gone: it will not serve work again.
    pub fn is_going(self) -> bool {
        matches!(self, Self::ShuttingDown | Self::Terminated)
    }
}

impl fmt::Display for MachineStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Host Factory's verdict on a machine of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MachineResult {
    /// Still being provided or returned.
    Executing,
    /// Done.
    Succeed,
    /// Failed.
    Fail,
}

impl MachineResult {
    /// Its Host Factory name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Executing => "executing",
            Self::Succeed => "succeed",
            Self::Fail => "fail",
        }
    }
}

/// What a cloud provider reports about one machine at one moment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MachineObservation {
    /// The machine.
    pub id: MachineId,
    /// The provider holding it.
    pub provider: ProviderName,
    /// Its state.
    pub status: MachineStatus,
    /// Private DNS host name.
    pub name: Option<String>,
    /// Private IP address.
    pub private_ip: Option<String>,
    /// Public IP address, when it has one.
    pub public_ip: Option<String>,
    /// Its instance type.
    pub instance_type: Option<String>,
    /// On demand or spot.
    pub price_type: Option<PriceType>,
    /// Its availability zone.
    pub zone: Option<String>,
    /// When it was launched.
    pub launch_time: Option<Timestamp>,
    /// The ownership tag `ohf:request-id`, when the machine carries one.
    pub request_id: Option<RequestId>,
    /// Its tags.
    pub tags: BTreeMap<String, String>,
    /// When the cloud has announced it will take the machine back (spot interruption).
    pub interruption_at: Option<Timestamp>,
    /// The dedicated host it runs on, when it does.
    pub cloud_host_id: Option<String>,
}

/// A machine as a request holds it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Machine {
    id: MachineId,
    provider: ProviderName,
    status: MachineStatus,
    name: Option<String>,
    private_ip: Option<String>,
    public_ip: Option<String>,
    instance_type: Option<String>,
    price_type: Option<PriceType>,
    zone: Option<String>,
    launch_time: Option<Timestamp>,
    tags: BTreeMap<String, String>,
    cloud_host_id: Option<String>,
    /// Why the machine failed, for Host Factory's `message`.
    failure: Option<String>,
    /// ohf has asked the cloud to terminate it (return, cleanup, surplus).
    terminating: bool,
    /// The return request that took it back.
    returned_by: Option<RequestId>,
}

impl Machine {
    /// A machine as first observed.
    pub fn from_observation(o: &MachineObservation) -> Self {
        Self {
            id: o.id.clone(),
            provider: o.provider.clone(),
            status: o.status,
            name: o.name.clone(),
            private_ip: o.private_ip.clone(),
            public_ip: o.public_ip.clone(),
            instance_type: o.instance_type.clone(),
            price_type: o.price_type,
            zone: o.zone.clone(),
            launch_time: o.launch_time,
            tags: o.tags.clone(),
            cloud_host_id: o.cloud_host_id.clone(),
            failure: None,
            terminating: false,
            returned_by: None,
        }
    }

    /// A machine named in a return request that ohf does not hold.
    pub fn unknown(id: MachineId, provider: ProviderName, name: Option<String>) -> Self {
        Self {
            id,
            provider,
            status: MachineStatus::Running,
            name,
            private_ip: None,
            public_ip: None,
            instance_type: None,
            price_type: None,
            zone: None,
            launch_time: None,
            tags: BTreeMap::new(),
            cloud_host_id: None,
            failure: None,
            terminating: false,
            returned_by: None,
        }
    }

    /// A fresh copy for a return request: what the cloud last said, none of the holder's verdicts.
    pub fn for_return(&self) -> Self {
        Self { failure: None, terminating: false, returned_by: None, ..self.clone() }
    }

    /// Whether taking in `o` would change it: its status, any field the cloud reports (a field
    /// it leaves out keeps what was known), its tags when it reports any. Copies nothing: a
    /// reconcile asks this of every machine it sees, and most have not changed.
    pub(crate) fn differs_from(&self, o: &MachineObservation) -> bool {
        macro_rules! differs {
            ($($field:ident),*) => { false $( || (o.$field.is_some() && o.$field != self.$field) )* };
        }
        self.status != o.status
            || differs!(name, private_ip, public_ip, instance_type, price_type, zone, launch_time, cloud_host_id)
            || (!o.tags.is_empty() && o.tags != self.tags)
    }

    /// Takes in what the cloud reports; true when anything changed.
    pub(crate) fn absorb(&mut self, o: &MachineObservation) -> bool {
        if !self.differs_from(o) {
            return false;
        }
        self.status = o.status;
        macro_rules! keep_known {
            ($($field:ident),*) => { $( if o.$field.is_some() { self.$field = o.$field.clone(); } )* };
        }
        keep_known!(name, private_ip, public_ip, instance_type, price_type, zone, launch_time, cloud_host_id);
        if !o.tags.is_empty() {
            self.tags = o.tags.clone();
        }
        true
    }

    pub(crate) fn set_status(&mut self, status: MachineStatus) {
        self.status = status;
    }
    pub(crate) fn fail(&mut self, message: String) {
        self.failure.get_or_insert(message);
    }
    pub(crate) fn mark_terminating(&mut self) {
        self.terminating = true;
    }
    /// The cloud call was refused for want of proof of ownership: failed, and no longer going.
    pub(crate) fn refuse_termination(&mut self, reason: String) {
        self.terminating = false;
        self.failure = Some(reason);
    }
    pub(crate) fn mark_returned(&mut self, by: RequestId) {
        self.returned_by = Some(by);
    }
    /// The return that named it was cancelled: it is held again.
    pub(crate) fn unmark_returned(&mut self, by: &RequestId) {
        if self.returned_by.as_ref() == Some(by) {
            self.returned_by = None;
        }
    }

    /// Its id.
    pub fn id(&self) -> &MachineId {
        &self.id
    }
    /// The provider holding it.
    pub fn provider(&self) -> &ProviderName {
        &self.provider
    }
    /// Its last observed state.
    pub fn status(&self) -> MachineStatus {
        self.status
    }
    /// Its host name.
    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }
    /// Private IP address.
    pub fn private_ip(&self) -> Option<&str> {
        self.private_ip.as_deref()
    }
    /// Public IP address.
    pub fn public_ip(&self) -> Option<&str> {
        self.public_ip.as_deref()
    }
    /// Its instance type.
    pub fn instance_type(&self) -> Option<&str> {
        self.instance_type.as_deref()
    }
    /// On demand or spot.
    pub fn price_type(&self) -> Option<PriceType> {
        self.price_type
    }
    /// Its availability zone.
    pub fn zone(&self) -> Option<&str> {
        self.zone.as_deref()
    }
    /// When it was launched.
    pub fn launch_time(&self) -> Option<Timestamp> {
        self.launch_time
    }
    /// Its tags.
    pub fn tags(&self) -> &BTreeMap<String, String> {
        &self.tags
    }
    /// The dedicated host it runs on.
    pub fn cloud_host_id(&self) -> Option<&str> {
        self.cloud_host_id.as_deref()
    }
    /// Why it failed, when it did.
    pub fn failure(&self) -> Option<&str> {
        self.failure.as_deref()
    }
    /// Termination was asked of the cloud.
    pub fn is_terminating(&self) -> bool {
        self.terminating
    }
    /// The return request that returned it.
    pub fn returned_by(&self) -> Option<&RequestId> {
        self.returned_by.as_ref()
    }

    /// Counts toward the request: not failed, not on its way out.
    pub fn is_alive(&self) -> bool {
        self.failure.is_none() && !self.terminating && !self.status.is_going()
    }

    /// Still held by its provision request: alive and not handed back.
    pub fn is_held(&self) -> bool {
        self.is_alive() && self.returned_by.is_none()
    }

    /// ohf asked for it to go and the cloud has not yet begun.
    pub fn awaits_termination(&self) -> bool {
        self.terminating && !self.status.is_going()
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::testing::observed;

    /// An observation of `i-1` where each field is left out, the same as `seen`'s, or another.
    fn report() -> impl Strategy<Value = MachineObservation> {
        let text = || proptest::option::of(prop_oneof![Just("a".to_owned()), Just("b".to_owned())]);
        let status = prop_oneof![Just(MachineStatus::Pending), Just(MachineStatus::Running)];
        let tags =
            proptest::collection::btree_map(prop_oneof![Just("k".to_owned()), Just("Name".to_owned())], "[ab]", 0..3);
        let price = proptest::option::of(prop_oneof![Just(PriceType::Ondemand), Just(PriceType::Spot)]);
        let when = proptest::option::of((0i64..2).prop_map(Timestamp::from_unix_millis));
        ((status, text(), text(), text(), text()), (price, text(), when, tags, text())).prop_map(
            |((status, name, private_ip, public_ip, instance_type), (price_type, zone, launch_time, tags, host))| {
                MachineObservation {
                    status,
                    name,
                    private_ip,
                    public_ip,
                    instance_type,
                    price_type,
                    zone,
                    launch_time,
                    tags,
                    cloud_host_id: host,
                    ..observed("i-1", "req-1", MachineStatus::Pending)
                }
            },
        )
    }

    proptest! {
        /// Whether a report changes a machine is answered without taking it in, and agrees with
        /// taking it in: a field left out keeps what was known, tags change only when reported.
        #[test]
        fn a_report_changes_a_machine_exactly_when_it_is_said_to(first in report(), next in report()) {
            let machine = Machine::from_observation(&first);
            let mut taken = machine.clone();
            taken.status = next.status;
            macro_rules! keep_known {
                ($($field:ident),*) => { $( if let Some(v) = &next.$field { taken.$field = Some(v.clone()); } )* };
            }
            keep_known!(name, private_ip, public_ip, instance_type, price_type, zone, launch_time, cloud_host_id);
            if !next.tags.is_empty() {
                taken.tags = next.tags.clone();
            }
            prop_assert_eq!(machine.differs_from(&next), taken != machine);
            let mut absorbed = machine.clone();
            prop_assert_eq!(absorbed.absorb(&next), taken != machine);
            prop_assert_eq!(absorbed, taken);
        }
    }
}
