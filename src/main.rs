//! The `pipgate` command: load the config, set up logging, serve until a signal.
//! The only place with `anyhow` and exit codes.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use pipgate::config::{self, ConfigSource, ProcessEnv};

/// Threads for blocking file-system work (reads of cached files, writes of fills). Tokio's
/// default is 512: a burst of 500 readers of one file then ran on 500 threads, each with its
/// own allocator arena holding its read buffers, and RSS stayed high after the burst. Reads
/// from the page cache take microseconds; a few threads keep up with any socket.
const BLOCKING_THREADS: usize = 16;

/// jemalloc instead of glibc's malloc: it hands freed memory back to the system (after its
/// decay time), where glibc kept what a burst had used. Measured with `benches/load.sh`: RSS
/// after the run 26.5 MiB against 31-37 MiB, hot throughput on a par or better, and a cold
/// 8,000-file page 39 ms against 57 ms (`benches/cold.sh`). mimalloc was tried too, with the
/// earlier 256 KiB reads: 306 MiB peak under 100 cold clients, 71 MiB after (README, Benchmarks).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[derive(Parser)]
#[command(name = "pipgate", version, about = "An authenticating, caching PyPI simple-index proxy")]
struct Cli {
    /// Log format.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text, env = "PIPGATE_LOG_FORMAT")]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the index. Without --config, proxies https://pypi.org/simple/ on 127.0.0.1:8080.
    Serve {
        /// TOML config file; PIPGATE_* environment variables apply on top of it.
        #[arg(long, env = "PIPGATE_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Check a config file and print the effective config (with overlays), secrets redacted.
    CheckConfig {
        /// TOML config file.
        file: PathBuf,
    },
    /// Print the hash of a client token for `[[access.token]] hash`. Reads the token from
    /// standard input (never from the command line, where `ps` would show it).
    HashToken {
        /// Make a new random token instead, and print it (first line) and its hash (second).
        #[arg(long)]
        generate: bool,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    let result = match cli.command {
        Command::Serve { config } => serve(config),
        Command::CheckConfig { file } => check_config(file),
        Command::HashToken { generate } => hash_token(generate),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("pipgate: {error:#}");
            ExitCode::from(2)
        }
    }
}

/// Log level from `PIPGATE_LOG` (an `EnvFilter` directive), default `info`. The text format
/// colours only a terminal, and never with `NO_COLOR` set (a file or `kubectl logs` gets plain
/// text).
fn init_logging(format: LogFormat) {
    use std::io::IsTerminal;
    let filter = tracing_subscriber::EnvFilter::try_from_env("PIPGATE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let colour = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let builder =
        tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(colour);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

fn serve(config_file: Option<PathBuf>) -> anyhow::Result<()> {
    let source = config_file.map_or(ConfigSource::Embedded, ConfigSource::File);
    let config = config::load(&source, &ProcessEnv)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .max_blocking_threads(BLOCKING_THREADS)
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        for upstream in &config.upstreams {
            tracing::info!(upstream = %upstream.name, url = %upstream.url, auth = upstream.auth.is_some(), "upstream");
        }
        // Before the first listener serves: once /readyz answers, a SIGTERM must drain, not kill.
        let stop = shutdown_signal();
        let server = pipgate::start(&config, &ProcessEnv).await?;
        let notify_socket = std::env::var("NOTIFY_SOCKET").ok();
        pipgate::notify_systemd(notify_socket.as_deref(), "READY=1");
        stop.await;
        pipgate::notify_systemd(notify_socket.as_deref(), "STOPPING=1");
        server.shutdown().await;
        Ok(())
    })
}

fn check_config(file: PathBuf) -> anyhow::Result<()> {
    let config = config::load(&ConfigSource::File(file.clone()), &ProcessEnv)?;
    let shown = toml::to_string_pretty(&config).context("cannot print the config")?;
    println!("# {}: valid. Effective config, secrets redacted:\n{shown}", file.display());
    Ok(())
}

fn hash_token(generate: bool) -> anyhow::Result<()> {
    if generate {
        let token = pipgate::generate_token();
        println!("{token}\n{}", pipgate::hash_token(&token));
        return Ok(());
    }
    let mut input = String::new();
    std::io::Read::read_to_string(&mut std::io::stdin(), &mut input)
        .context("cannot read the token from standard input")?;
    let token = input.trim_end_matches(['\n', '\r']);
    if token.chars().count() < pipgate::MIN_TOKEN_CHARS || token.trim() != token {
        anyhow::bail!(
            "a client token must be at least {} characters with no surrounding spaces (it is stored as a fast hash, so it must be long and random); `pipgate hash-token --generate` makes one",
            pipgate::MIN_TOKEN_CHARS
        );
    }
    println!("{}", pipgate::hash_token(token));
    Ok(())
}

/// Resolves on SIGINT or SIGTERM (Kubernetes sends SIGTERM before it kills a pod). The
/// handlers are installed when this is called, not when the future is first polled, so a
/// signal that arrives as soon as the listener answers still drains instead of killing.
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    let signals = {
        use tokio::signal::unix::{SignalKind, signal};
        (signal(SignalKind::interrupt()).ok(), signal(SignalKind::terminate()).ok())
    };
    #[cfg(not(unix))]
    let ctrl_c = tokio::signal::ctrl_c();
    async move {
        #[cfg(unix)]
        {
            let wait = |signal: Option<tokio::signal::unix::Signal>| async move {
                match signal {
                    Some(mut signal) => {
                        signal.recv().await;
                    }
                    None => std::future::pending().await,
                }
            };
            let (interrupt, terminate) = signals;
            tokio::select! {
                () = wait(interrupt) => {},
                () = wait(terminate) => {},
            }
        }
        #[cfg(not(unix))]
        let _ = ctrl_c.await;
        tracing::info!("shutdown signal received");
    }
}
