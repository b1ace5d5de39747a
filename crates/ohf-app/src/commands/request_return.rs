//! Return machines to the cloud.

use ohf_domain::limits;
use ohf_domain::{DomainError, Machine, MachineId, Request, RequestId, RequestKind, ReturnedMachine, TimeoutSecs};

use super::request_machines::Asked;
use crate::cqrs::{Handler, message};
use crate::lifecycle::ReconcileReport;
use crate::lifecycle::reconcile::Doomed;
use crate::ports::find_machine;
use crate::{App, AppError};

/// A machine named by its id, its host name, or both.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MachineRef {
    /// The machine's id (an instance id on AWS).
    pub id: Option<String>,
    /// The machine's host name.
    pub name: Option<String>,
}

/// Return machines to the cloud: a return request, its terminations made at once. A machine
/// no stored request holds is refused in it, and nothing is asked of the cloud for it.
#[derive(Debug, Clone, Default)]
pub struct RequestReturn {
    /// The machines to return.
    pub machines: Vec<MachineRef>,
    /// The caller's id for the return request: the same id again answers the same request.
    pub request_id: Option<String>,
    /// Terminate at once: no drain, and a draining return of the same id ends its drain.
    pub force: bool,
    /// Seconds the return may take; the configured default when absent.
    pub timeout: Option<i64>,
    /// Without `force`: seconds the scheduler has to drain the machines (they are announced by
    /// `getReturnRequests` meanwhile) before they are terminated; shorter than the timeout.
    pub drain_timeout: Option<i64>,
    /// Who asks (a token's name, the OS user); `__Unknown__` is refused.
    pub requester: Option<String>,
}

message!(command RequestReturn => Request);

impl Handler<RequestReturn> for App {
    /// Stores a return request for the named machines and asks the cloud to terminate them. A
    /// return the rules refuse is answered with the refusal and kept as REJECTED.
    async fn handle(&self, cmd: RequestReturn) -> Result<Request, AppError> {
        let asked = Asked {
            kind: RequestKind::Return,
            template_id: None,
            count: i64::try_from(cmd.machines.len()).unwrap_or(i64::MAX),
            requester: cmd.requester.clone(),
        };
        let outcome = self.admit_return(cmd).await;
        self.keep_if_rejected(asked, outcome).await
    }
}

impl App {
    /// Validates and stores a return request, then starts its terminations.
    async fn admit_return(&self, cmd: RequestReturn) -> Result<Request, AppError> {
        if cmd.machines.is_empty() {
            return Err(DomainError::validation("machines", "name at least one machine to return").into());
        }
        limits::check_len("machines", cmd.machines.len(), limits::MAX_ITEMS_PER_CALL)?;
        let timeout = cmd.timeout.map(TimeoutSecs::new).transpose()?.unwrap_or(self.settings.return_timeout);
        let drain = match cmd.drain_timeout {
            None | Some(0) => None,
            Some(secs) if secs < 0 || secs >= i64::from(timeout.get()) => {
                let message = format!("must be from 0 to less than the timeout ({} s), got {secs}", timeout.get());
                return Err(DomainError::validation("drainTimeout", message).into());
            }
            Some(secs) => u32::try_from(secs).ok(),
        };
        let requester = ohf_domain::check_requester(cmd.requester.as_deref())?;
        let client_id = cmd.request_id.map(RequestId::new).transpose()?;
        if let Some(id) = &client_id
            && let Some(mut existing) = self.store.get(id).await?
        {
            if existing.kind() != RequestKind::Return {
                return Err(DomainError::DuplicateRequest { request_id: id.to_string() }.into());
            }
            // The same return again, forced: a drain under way ends and its machines go now.
            let now = self.clock.now();
            if cmd.force && existing.draining(now) {
                existing.end_drain("the caller forced the return".into(), now);
                let first = existing.reconcile(&[], &[], now, &self.settings.policy);
                self.commit_as(&mut [&mut existing], requester.as_deref()).await?;
                self.start_terminations(&mut existing, first).await?;
            }
            return Ok(existing);
        }
        let mut ids = Vec::new();
        let mut names = Vec::new();
        for m in &cmd.machines {
            match (&m.id, &m.name) {
                (None, None) => {
                    return Err(DomainError::validation("machines", "each machine needs a machineId or a name").into());
                }
                (id, name) => {
                    if let Some(id) = id {
                        ids.push(MachineId::new(id.clone())?);
                    }
                    if let Some(n) = name {
                        names.push(n.clone());
                    }
                }
            }
        }
        let mut holders = self.store.find_holders(&ids, &names).await?;
        let mut returned = Vec::new();
        for m in &cmd.machines {
            let id = m.id.clone().map(MachineId::new).transpose()?;
            let found = holders.iter().find_map(|h| {
                find_machine(h, id.as_ref(), m.name.as_deref()).map(|machine| (h.id().clone(), machine.for_return()))
            });
            // A machine no request of this store holds is not ohf's to terminate: it fails
            // in the return request, and nothing is asked of the cloud.
            returned.push(match (found, id) {
                (Some((holder, machine)), _) => ReturnedMachine { machine, holder: Some(holder), refusal: None },
                (None, id) => {
                    let label = id.as_ref().map(ToString::to_string).or_else(|| m.name.clone()).unwrap_or_default();
                    let id = match id {
                        Some(id) => id,
                        None => MachineId::new(label.clone())?,
                    };
                    ReturnedMachine {
                        machine: Machine::unknown(id, self.default_provider().name().clone(), m.name.clone()),
                        holder: None,
                        refusal: Some(format!(
                            "machine '{label}' was not launched by this ohf installation (no request holds it); \
                             nothing was terminated"
                        )),
                    }
                }
            });
        }
        let now = self.clock.now();
        let id = client_id.unwrap_or_else(|| self.ids.next(RequestKind::Return));
        let who = requester.clone();
        let mut ret = Request::return_machines(id.clone(), returned, timeout, cmd.force, drain, requester, now)?;
        // Its first step (terminate every machine) is stored with it and made at once.
        let first = ret.reconcile(&[], &[], now, &self.settings.policy);
        for h in holders.iter_mut() {
            let mine: Vec<MachineId> =
                ret.holders().iter().filter(|(_, holder)| *holder == h.id()).map(|(m, _)| m.clone()).collect();
            for m in mine {
                h.mark_returned(&m, &id, now);
            }
        }
        let mut batch: Vec<&mut Request> = vec![&mut ret];
        batch.extend(holders.iter_mut().filter(|h| !h.uncommitted().is_empty()));
        self.commit_as(&mut batch, who.as_deref()).await?;
        tracing::info!(request_id = %id, machines = ret.count(), draining = ret.draining(now), "return request accepted");
        self.start_terminations(&mut ret, first).await?;
        Ok(ret)
    }
    /// Makes the terminations a return request's step decided (none while it drains) and
    /// records the refusals.
    async fn start_terminations(&self, ret: &mut Request, first: ohf_domain::Decision) -> Result<(), AppError> {
        if first.terminate.is_empty() {
            return Ok(());
        }
        let owner = self.ownership().await?;
        let doomed = Doomed::of(ret, first.terminate);
        let refused = self.terminate(doomed, &owner, &mut ReconcileReport::default()).await;
        if self.record_refusals(ret, &refused) {
            // The next cycle records them again if this write loses a race.
            let _ = self.commit(&mut [ret], None).await;
        }
        Ok(())
    }
}
