//! The periodic provider health checks, run by whichever process is due: the daemon's worker,
//! or, without a daemon, a process answering a poll.

use crate::App;

/// The leased job of the health checks: one process of all those sharing the store runs them
/// per `health_check_interval`.
const HEALTH_JOB: &str = "provider-health";

impl App {
    /// Runs every enabled provider's health check when a check is due: `holder` (a worker or a
    /// polling process) takes the lease for a little less than the interval, so of all the
    /// processes sharing the store one checks per interval and none is skipped. Answers whether
    /// this call ran the checks.
    pub async fn check_providers_when_due(&self, holder: &str) -> bool {
        let every_ms = i64::try_from(self.health_check_interval().saturating_mul(1000)).unwrap_or(i64::MAX);
        let ttl = (every_ms / 10 * 9).max(1);
        match self.store.lead(HEALTH_JOB, holder, self.store_now(), ttl).await {
            Ok(true) => {
                let checks = self.check_providers().await;
                tracing::debug!(holder, ?checks, "provider health checks");
                true
            }
            Ok(false) => false,
            Err(e) => {
                tracing::warn!(holder, error = %e, "health check lease failed");
                false
            }
        }
    }
}
