//! Retention: delete finished requests.

use crate::cqrs::{Handler, message};
use crate::{App, AppError};

/// Delete the requests that finished more than `keep_days` days ago and hold no machine, with
/// their events and claim history; answers how many went.
#[derive(Debug, Clone, Copy)]
pub struct PurgeHistory {
    /// Finished requests younger than this many days stay.
    pub keep_days: u32,
}

message!(command PurgeHistory => u64);

impl Handler<PurgeHistory> for App {
    /// Deletes the requests that finished more than `keep_days` days ago and hold no machine,
    /// with their events and claim history (retention); answers how many went.
    async fn handle(&self, cmd: PurgeHistory) -> Result<u64, AppError> {
        const BATCH: u32 = 1000;
        let before = self.clock.now().plus_secs(-(i64::from(cmd.keep_days) * 86_400));
        let mut total = 0;
        loop {
            let gone = self.store.delete_finished(before, BATCH).await?;
            total += gone;
            if gone < u64::from(BATCH) {
                break;
            }
        }
        if total > 0 {
            tracing::info!(deleted = total, keep_days = cmd.keep_days, "finished requests past retention deleted");
        }
        Ok(total)
    }
}
