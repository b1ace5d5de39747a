//! `ohf doctor`: checks an installation before the first request fails — the store, the
//! templates, each provider's answer and what the cloud says of what each template names.

use serde::Serialize;

use crate::cqrs::{Handler, message};
use crate::ports::RequestFilter;
use crate::{App, AppError, CloudProvider};

/// Check the installation.
#[derive(Debug, Clone, Default)]
pub struct CheckInstallation;

/// One check and its outcome.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// What was checked (`store`, `templates`, `provider sim-1`, `template T on sim-1`).
    pub check: String,
    /// It passed.
    pub ok: bool,
    /// What was found, in words.
    pub detail: String,
}

impl Finding {
    fn of(check: impl Into<String>, outcome: Result<String, String>) -> Self {
        let (ok, detail) = match outcome {
            Ok(d) => (true, d),
            Err(d) => (false, d),
        };
        Self { check: check.into(), ok, detail }
    }
}

message!(query CheckInstallation => Vec<Finding>);

impl Handler<CheckInstallation> for App {
    async fn handle(&self, _: CheckInstallation) -> Result<Vec<Finding>, AppError> {
        let mut findings = Vec::new();
        let probe = RequestFilter { limit: Some(1), ..Default::default() };
        findings.push(Finding::of(
            "store",
            self.store.list(&probe).await.map(|_| "opens and answers".to_owned()).map_err(|e| e.to_string()),
        ));
        // Claims and leases are judged by the store's clock where hosts share it (Postgres);
        // AWS refuses requests signed more than 15 minutes off.
        if let Ok(Some(store_now)) = self.store.now().await {
            let skew = (store_now.unix_millis() - self.clock.now().unix_millis()).abs() as f64 / 1000.0;
            let detail = format!("this host and the store's clock differ by {skew:.1} s");
            findings.push(Finding::of(
                "clock",
                if skew <= 60.0 { Ok(detail) } else { Err(format!("{detail}; fix: run NTP (chrony) on every host")) },
            ));
        }
        let templates = match self.templates().await {
            Ok((ready, refused)) => {
                for (t, e) in &refused {
                    findings.push(Finding::of(format!("template {}", t.id()), Err(e.to_string())));
                }
                let detail = format!("{} read, {} refused", ready.len() + refused.len(), refused.len());
                findings.push(Finding::of("templates", if refused.is_empty() { Ok(detail) } else { Err(detail) }));
                ready
            }
            Err(e) => {
                findings.push(Finding::of("templates", Err(e.to_string())));
                Vec::new()
            }
        };
        for slot in self.registry.slots().into_iter().filter(|s| s.entry.enabled) {
            let name = slot.entry.strategy_name.clone();
            let (answer, ms) = slot.provider.check_health().await;
            let answers = answer.is_ok();
            findings.push(Finding::of(
                format!("provider {name}"),
                answer.map(|()| format!("answers ({ms} ms)")).map_err(|e| e.to_string()),
            ));
            if !answers {
                continue;
            }
            match slot.provider.identity().await {
                Ok(None) => {}
                Ok(Some(who)) => findings.push(Finding::of(format!("credentials of {name}"), Ok(who))),
                Err(e) => findings.push(Finding::of(
                    format!("credentials of {name}"),
                    Err(format!("{e}; fix: give the provider working credentials (docs/aws.md)")),
                )),
            }
            for t in templates.iter().filter(|t| t.provider().is_none_or(|p| p.as_str() == name)) {
                let check = format!("template {} on {name}", t.id());
                let outcome = match slot.provider.check_template(t).await {
                    Err(e) => Err(e.to_string()),
                    Ok(()) => match slot.provider.inspect(t).await {
                        Ok(problems) if problems.is_empty() => Ok("launchable".to_owned()),
                        Ok(problems) => Err(problems.join("; ")),
                        Err(e) => Err(format!("could not be checked: {e}")),
                    },
                };
                findings.push(Finding::of(check, outcome));
            }
        }
        Ok(findings)
    }
}
