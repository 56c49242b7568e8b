//! `sluice serve`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use sluice_router::store::StoreOptions;

use crate::server::{self, ServeOptions};
use crate::telemetry::LogFormat;

/// Run the router: gRPC and HTTP on one port, state in the data directory.
#[derive(Debug, Args)]
pub(crate) struct ServeArgs {
    /// Configuration file (TOML); without it the built-in config/default.toml is used.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Directory for durable state; created when missing.
    #[arg(long, value_name = "DIR", default_value = "sluice-data")]
    data_dir: PathBuf,
    /// Address for gRPC and HTTP; port 0 picks a free port, printed at start-up.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8085")]
    listen: SocketAddr,
    /// Largest request body of an upload (POST /upload/BUCKET), in bytes, all files of the
    /// request together; larger uploads get HTTP 413. Overrides [limits] max_upload_bytes;
    /// without either, 32 MiB
    #[arg(
        long,
        value_name = "BYTES",
        value_parser = clap::value_parser!(u64).range(1..)
    )]
    max_upload_bytes: Option<u64>,
    /// Free space to keep on the data directory's disk, in MiB; below it, publishes get
    /// RESOURCE_EXHAUSTED until space is freed, while acknowledgements still work
    #[arg(long, value_name = "MIB", default_value_t = 256)]
    disk_reserve_mib: u64,
    /// Log line format on stderr: text, or json with one object per line carrying the trace
    /// and span ids
    #[arg(
        long,
        value_name = "FORMAT",
        value_enum,
        default_value_t,
        env = "SLUICE_LOG_FORMAT"
    )]
    log_format: LogFormat,
}

/// Runs the server until SIGINT or SIGTERM; exits 0 after a clean shutdown, 1 on an error.
pub(crate) fn run(args: ServeArgs) -> ExitCode {
    let options = ServeOptions {
        config: args.config,
        data_dir: args.data_dir,
        listen: args.listen,
        max_upload_bytes: args.max_upload_bytes,
        store: StoreOptions {
            disk_reserve_bytes: args.disk_reserve_mib.saturating_mul(1024 * 1024),
            ..StoreOptions::default()
        },
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            super::write_stderr(format_args!(
                "error: failed to start the async runtime: {err}"
            ));
            return ExitCode::FAILURE;
        }
    };
    // The OTLP exporter's gRPC client needs the runtime while it is built.
    let telemetry = runtime.block_on(async { crate::telemetry::init(args.log_format) });
    let result = runtime.block_on(server::serve(options));
    telemetry.shutdown();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            super::write_stderr(format_args!("error: {err:#}"));
            ExitCode::FAILURE
        }
    }
}
