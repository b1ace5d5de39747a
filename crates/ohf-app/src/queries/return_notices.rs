//! Machines the cloud is taking back.

use ohf_domain::limits;
use ohf_domain::{Machine, MachineId, MachineStatus, RequestKind};

use crate::commands::MachineRef;
use crate::cqrs::{Handler, message};
use crate::ports::{DescribeQuery, RequestFilter};
use crate::{App, AppError};

/// A machine the cloud is taking back, with the seconds left before it goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReturnNotice {
    /// The machine's host name (its id when it has none).
    pub machine: String,
    /// The machine's id.
    pub machine_id: MachineId,
    /// Seconds left before it goes (0: already gone or stopped).
    pub grace_period: i64,
}

/// The machines the cloud is taking back: spot interruption notices (grace = seconds left),
/// machines stopped or terminated outside ohf (grace 0), and machines of draining return
/// requests (grace = seconds left in the drain). `known` are the hosts the
/// scheduler holds; empty means every machine ohf holds.
#[derive(Debug, Clone, Default)]
pub struct GetReturnNotices {
    /// The machines the scheduler holds; empty for all.
    pub known: Vec<MachineRef>,
}

message!(query GetReturnNotices => Vec<ReturnNotice>);

impl Handler<GetReturnNotices> for App {
    /// The machines the cloud is taking back: spot interruption notices (grace = seconds
    /// left) and machines stopped or terminated outside ohf (grace 0). `known` are the hosts
    /// the scheduler holds; empty means every machine ohf holds.
    async fn handle(&self, q: GetReturnNotices) -> Result<Vec<ReturnNotice>, AppError> {
        let known = &q.known[..];
        limits::check_len("machines", known.len(), limits::MAX_ITEMS_PER_CALL)?;
        let ids: Vec<MachineId> =
            known.iter().filter_map(|m| m.id.clone()).filter_map(|i| MachineId::new(i).ok()).collect();
        let names: Vec<String> = known.iter().filter_map(|m| m.name.clone()).collect();
        let holders = if known.is_empty() {
            // Only requests that still hold machines: the cost follows what is held, not history.
            let holding = RequestFilter { kind: Some(RequestKind::Provision), holding: true, ..Default::default() };
            self.store.list(&holding).await?
        } else {
            self.store.find_holders(&ids, &names).await?
        };
        let mut candidates: Vec<&Machine> = Vec::new();
        for h in &holders {
            for m in h.machines() {
                let asked = known.is_empty()
                    || known.iter().any(|k| {
                        k.id.as_deref() == Some(m.id().as_str()) || (k.name.is_some() && k.name.as_deref() == m.name())
                    });
                if asked && m.returned_by().is_none() && !m.is_terminating() && m.failure().is_none() {
                    candidates.push(m);
                }
            }
        }
        let now = self.clock.now();
        let mut notices = Vec::new();
        for provider in &self.providers() {
            let machine_ids: Vec<MachineId> =
                candidates.iter().filter(|m| m.provider() == provider.name()).map(|m| m.id().clone()).collect();
            if machine_ids.is_empty() {
                continue;
            }
            let query = DescribeQuery { machine_ids: machine_ids.clone(), ..Default::default() };
            let seen = provider
                .describe(&query)
                .await
                .map_err(|error| AppError::Cloud { provider: provider.name().to_string(), error })?;
            for id in &machine_ids {
                let machine = candidates.iter().find(|m| m.id() == id).expect("candidate");
                let label = machine.name().unwrap_or(id.as_str()).to_owned();
                let grace = match seen.iter().find(|o| &o.id == id) {
                    None => Some(0),
                    Some(o) if o.status != MachineStatus::Running && o.status != MachineStatus::Pending => Some(0),
                    Some(o) => o.interruption_at.map(|t| t.secs_since(now)),
                };
                if let Some(grace_period) = grace {
                    notices.push(ReturnNotice { machine: label, machine_id: id.clone(), grace_period });
                }
            }
        }
        // Machines of draining returns: the scheduler moves work off them before they go.
        let active = RequestFilter::waiting(Some(RequestKind::Return));
        for ret in self.store.list(&active).await?.iter().filter(|r| r.draining(now)) {
            let left = ret
                .drain_until()
                .map_or(0, |until| (until.unix_millis().saturating_sub(now.unix_millis()) + 999) / 1000);
            for m in ret.machines().iter().filter(|m| m.failure().is_none()) {
                let asked = known.is_empty()
                    || known.iter().any(|k| {
                        k.id.as_deref() == Some(m.id().as_str()) || (k.name.is_some() && k.name.as_deref() == m.name())
                    });
                if asked && !notices.iter().any(|n: &ReturnNotice| &n.machine_id == m.id()) {
                    let label = m.name().unwrap_or(m.id().as_str()).to_owned();
                    notices.push(ReturnNotice { machine: label, machine_id: m.id().clone(), grace_period: left });
                }
            }
        }
        Ok(notices)
    }
}
