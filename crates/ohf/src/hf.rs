//! `ohf hf <operation> -f <input.json>`: the Host Factory contract. Exactly one JSON document
//! goes to stdout; logs go to a file in the log dir (or stderr).

use std::io::{IsTerminal, Read, Write};
use std::process::ExitCode;

use ohf_hostfactory::{Answer, HfError, Operation, parse_input};
use tracing::Instrument;

use crate::cli::{Global, HfArgs};
use crate::commands::overrides;
use crate::output;
use ohf_server::{Resolved, hostfactory};

/// Writes the one JSON document of the answer to stdout in a single buffered write.
fn answer(doc: &Answer, ok: bool) -> ExitCode {
    let mut text = match doc.to_pretty() {
        Ok(text) => text,
        Err(e) => return fail(format!("cannot write the answer: {e}")),
    };
    text.push(b'\n');
    let written = std::io::stdout().lock().write_all(&text).and_then(|()| std::io::stdout().lock().flush());
    match (written, ok) {
        (Ok(()), true) => ExitCode::SUCCESS,
        _ => ExitCode::from(1),
    }
}

fn fail(message: impl Into<String>) -> ExitCode {
    answer(&hostfactory::failure(message).into(), false)
}

fn read_input(args: &HfArgs) -> Result<String, String> {
    match &args.file {
        Some(path) => std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display())),
        None if std::io::stdin().is_terminal() => Ok(String::new()),
        None => {
            let mut text = String::new();
            std::io::stdin().read_to_string(&mut text).map_err(|e| format!("cannot read standard input: {e}"))?;
            Ok(text)
        }
    }
}

pub async fn run(global: &Global, args: &HfArgs) -> ExitCode {
    let Some(op) = Operation::parse(&args.operation) else {
        let known: Vec<_> = Operation::ALL.iter().map(|o| o.name()).collect();
        return fail(format!("unknown operation '{}'; operations: {}", args.operation, known.join(", ")));
    };
    let input = match read_input(args).map_err(HfError::Input).and_then(|t| parse_input(&t)) {
        Ok(v) => v,
        Err(e) => return answer(&e.to_json().into(), false),
    };
    if let Some(options) = global.client_options() {
        // The daemon holds the state; a local config only says where to log, when there is one.
        let _log = Resolved::load(&overrides(global)).ok().map(|s| output::log_to_dir(&s, global.verbose));
        let span = tracing::info_span!("hf", server = %options.server, operation = op.name());
        let (doc, ok) = hostfactory::run_remote(&options, op, &input).instrument(span).await;
        return answer(&doc.into(), ok);
    }
    let settings = match Resolved::load(&overrides(global)) {
        Ok(s) => s,
        Err(e) => return fail(format!("{e:#}")),
    };
    let _log = output::log_to_dir(&settings, global.verbose);
    let provider = std::env::var("HF_PROVIDER_NAME").or_else(|_| std::env::var("PROVIDER_NAME")).unwrap_or_default();
    let span = tracing::info_span!("hf", provider = %provider, operation = op.name());
    let (doc, ok) = hostfactory::run_local(&settings, op, &input).instrument(span).await;
    answer(&doc, ok)
}
