//! The `ohf` binary: parses the command line, sets up logging and runs one command through
//! the server library (`ohf-server`), rendering its answer.

mod cli;
mod commands;
mod hf;
mod mcp;
mod output;
mod quickstart;
mod route;
mod serve;
mod telemetry;

use std::process::ExitCode;

use clap::Parser;

use crate::cli::{Cli, Command};

/// mimalloc: a Host Factory call and the daemon's hot paths spend a fifth of their time
/// allocating and freeing (decoding stored requests, building answers); the library crates
/// leave the choice to whoever embeds them.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let cli = match Cli::try_parse_from(&args) {
        Ok(cli) => cli,
        // Host Factory reads stdout: even a bad command line answers with {"message": …}.
        Err(e) if args.get(1).is_some_and(|a| a == "hf") && e.use_stderr() => {
            let message =
                e.to_string().lines().next().unwrap_or("invalid arguments").trim_start_matches("error: ").to_owned();
            println!("{}", serde_json::json!({ "message": message }));
            return ExitCode::from(1);
        }
        Err(e) => e.exit(),
    };
    // Completions and the manual come from the command line's definition alone.
    match &cli.command {
        Command::Completions { shell } => return output::completions(*shell),
        Command::Man => return output::manual(),
        _ => {}
    }
    // One-shot commands start fastest on one thread; the daemon gets a thread per core.
    let runtime = match &cli.command {
        Command::Serve(_) => tokio::runtime::Builder::new_multi_thread().enable_all().build(),
        _ => tokio::runtime::Builder::new_current_thread().enable_all().build(),
    };
    let runtime = match runtime {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let code = runtime.block_on(async move {
        match cli.command {
            Command::Hf(args) => hf::run(&cli.global, &args).await,
            Command::Serve(args) => serve::run(&cli.global, &args).await,
            Command::Mcp { role } => {
                output::log_to_stderr(cli.global.verbose);
                let served = match commands::backend(&cli.global).await {
                    Ok(backend) => mcp::run(backend, role.role()).await,
                    Err(e) => Err(e),
                };
                commands::report(&cli.global, served)
            }
            Command::Quickstart(args) => {
                output::log_to_stderr(cli.global.verbose);
                commands::report(&cli.global, quickstart::run(&cli.global, &args).await)
            }
            command => commands::run(&cli.global, command).await,
        }
    });
    // The answer is out: a cloud call abandoned at its deadline (its step goes on at the next
    // poll) must not hold the process up.
    runtime.shutdown_timeout(std::time::Duration::from_millis(200));
    telemetry::shutdown();
    code
}
