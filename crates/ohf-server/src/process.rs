//! What a short-lived process (a Host Factory call, an `ohf` command) needs: who runs it, and
//! how it ends without cutting off what its events owe.

use crate::wiring::Runtime;

/// The longest a short-lived process waits at its end for the event subscribers.
const EXIT_DRAIN: std::time::Duration = std::time::Duration::from_secs(3);

/// Writes this process's provider figures to the store, lets the event subscribers (alerts,
/// figures) finish what they were handed, and sends the alert digests that are due (the
/// alerter's state is shared, so without a daemon whichever process ends first after a window
/// sends its digest, once).
pub(crate) async fn finish(runtime: &Runtime) {
    runtime.app.flush_figures().await;
    runtime.app.bus().drain(EXIT_DRAIN).await;
    runtime.alerter.tick().await;
}

/// Who runs this process: `USER`, `LOGNAME`, else the name of its uid in `/etc/passwd`.
pub(crate) fn os_user() -> Option<String> {
    let named = |v: &str| std::env::var(v).ok().filter(|u| !u.trim().is_empty());
    named("USER").or_else(|| named("LOGNAME")).or_else(|| {
        let status = std::fs::read_to_string("/proc/self/status").ok()?;
        let uid = status.lines().find_map(|l| l.strip_prefix("Uid:"))?.split_whitespace().next()?.to_owned();
        let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
        passwd.lines().find_map(|l| {
            let mut fields = l.split(':');
            let name = fields.next()?;
            (fields.nth(1)? == uid).then(|| name.to_owned())
        })
    })
}
