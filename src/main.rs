//! The `sessiond` binary: parse the command line, set up logging, load and validate the
//! configuration before binding anything, run until SIGINT/SIGTERM, then drain.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};
use sessiond::certs::CertAuthority;
use sessiond::cli::{Action, CookieFormat};
use sessiond::{Config, Daemon};

/// Exit code for a configuration that cannot be used (EX_USAGE).
const EXIT_CONFIG: u8 = 64;

#[derive(Parser)]
#[command(
    name = "sessiond",
    version,
    about = "A forward proxy that owns HTTP sessions"
)]
struct Cli {
    /// Log line format.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the daemon (the default).
    Run {
        /// Configuration file; without one the built-in defaults apply.
        #[arg(short, long)]
        config: Option<PathBuf>,
    },
    /// Validate a configuration file and exit: 0 if it is usable, 64 if not.
    Check {
        #[arg(short, long)]
        config: PathBuf,
    },
    /// Print the local CA certificate (PEM) for clients to trust, creating the CA if there
    /// is none yet.
    Ca {
        /// Configuration file; without one the built-in defaults apply.
        #[arg(short, long)]
        config: Option<PathBuf>,
    },
    /// List, show or delete the sessions of a running daemon (through its admin API).
    Sessions {
        #[command(flatten)]
        client: ClientArgs,
        /// What to do; `list` when left out.
        #[command(subcommand)]
        command: Option<SessionsCommand>,
    },
    /// Export or import a session's cookies (through the admin API).
    Cookies {
        #[command(flatten)]
        client: ClientArgs,
        #[command(subcommand)]
        command: CookiesCommand,
    },
    /// Print the daemon's exchanges as they happen, one line each (through the admin API's
    /// /events); runs until the daemon ends the stream (exit 0) or drops a reader that is
    /// too slow (exit 1).
    Events {
        #[command(flatten)]
        client: ClientArgs,
        /// Only this session's exchanges.
        #[arg(long)]
        session: Option<String>,
        /// Print each event's JSON as the daemon sent it.
        #[arg(long)]
        json: bool,
    },
    /// Exit 0 when the daemon's admin API answers /healthz with 200, 1 otherwise; prints
    /// nothing on success (for container health checks).
    Health {
        #[command(flatten)]
        client: ClientArgs,
    },
}

/// The configuration whose `admin.listen` and `admin.token` the command uses.
#[derive(Args)]
struct ClientArgs {
    /// Configuration file naming the admin API; without one the built-in defaults apply.
    #[arg(short, long, global = true)]
    config: Option<PathBuf>,
}

#[derive(Subcommand)]
enum SessionsCommand {
    /// One line per session: its name, and whether it is configured and in memory.
    List {
        /// Print the admin API's JSON as it is.
        #[arg(long)]
        json: bool,
    },
    /// A session's settings, as pretty JSON (never its secrets).
    Show {
        /// The session's name.
        name: String,
    },
    /// Forget a session and its cookies; a configured session only loses its cookies.
    Delete {
        /// The session's name.
        name: String,
    },
}

#[derive(Subcommand)]
enum CookiesCommand {
    /// Write a session's cookies to stdout.
    Export {
        /// The session's name.
        name: String,
        #[arg(long, value_enum, default_value_t = CookiesFormat::Netscape)]
        format: CookiesFormat,
    },
    /// Add cookies from a cookies.txt or JSON file (`-` for stdin) to a session, creating
    /// it if needed.
    Import {
        /// The session's name.
        name: String,
        /// cookies.txt (as curl writes it) or the JSON of `export --format json`; `-` for
        /// stdin. Sent as it is; nothing is imported if any line is bad.
        file: PathBuf,
        /// Replace the session's cookies instead of merging into them.
        #[arg(long)]
        replace: bool,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum CookiesFormat {
    /// cookies.txt, as curl reads and writes it.
    Netscape,
    Json,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    match cli.command.unwrap_or(Command::Run { config: None }) {
        Command::Check { config } => check(&config),
        Command::Ca { config } => ca(config.as_deref()),
        Command::Sessions { client, command } => {
            let action = match command.unwrap_or(SessionsCommand::List { json: false }) {
                SessionsCommand::List { json } => Action::SessionsList { json },
                SessionsCommand::Show { name } => Action::SessionsShow { name },
                SessionsCommand::Delete { name } => Action::SessionsDelete { name },
            };
            admin_call(client, action)
        }
        Command::Cookies { client, command } => {
            let action = match command {
                CookiesCommand::Export { name, format } => Action::CookiesExport {
                    name,
                    format: match format {
                        CookiesFormat::Netscape => CookieFormat::Netscape,
                        CookiesFormat::Json => CookieFormat::Json,
                    },
                },
                CookiesCommand::Import {
                    name,
                    file,
                    replace,
                } => Action::CookiesImport {
                    name,
                    file,
                    replace,
                },
            };
            admin_call(client, action)
        }
        Command::Health { client } => admin_call(client, Action::Health),
        Command::Events {
            client,
            session,
            json,
        } => events(client, session.as_deref(), json),
        Command::Run { config } => {
            let config = match load(config.as_deref()) {
                Ok(c) => c,
                Err(code) => return code,
            };
            let runtime = match tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
            {
                Ok(r) => r,
                Err(e) => {
                    eprintln!("sessiond: cannot start the runtime: {e}");
                    return ExitCode::FAILURE;
                }
            };
            runtime.block_on(run(config))
        }
    }
}

fn load(path: Option<&std::path::Path>) -> Result<Config, ExitCode> {
    let loaded = match path {
        Some(p) => Config::from_file(p),
        None => Ok(Config::defaults()),
    };
    loaded.map_err(|e| {
        eprintln!("sessiond: configuration error: {e}");
        ExitCode::from(EXIT_CONFIG)
    })
}

/// A command that talks to the admin API of the configuration: one request on a
/// current-thread runtime; the answer on stdout, or `sessiond: MESSAGE` on stderr and exit 1
/// (64 when the configuration cannot name the admin API).
fn admin_call(client: ClientArgs, action: Action) -> ExitCode {
    let (config, runtime) = match client_setup(&client) {
        Ok(c) => c,
        Err(code) => return code,
    };
    match runtime.block_on(sessiond::cli::execute(&config.admin, &action)) {
        Ok(out) => {
            // Not `print!`, which panics when stdout is a closed pipe.
            use std::io::Write as _;
            let mut stdout = std::io::stdout().lock();
            match stdout.write_all(&out).and_then(|()| stdout.flush()) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("sessiond: cannot write the output: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Err(e) => client_error(&e),
    }
}

/// `sessiond events`: the exchanges on stdout as they come, until the daemon ends the
/// stream (0); `sessiond: MESSAGE` on stderr and 1 when it cannot be reached, answers an
/// error or drops this reader for being slow (64 for an unusable configuration).
fn events(client: ClientArgs, session: Option<&str>, json: bool) -> ExitCode {
    let (config, runtime) = match client_setup(&client) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let mut stdout = std::io::stdout().lock();
    match runtime.block_on(sessiond::cli::events(
        &config.admin,
        session,
        json,
        &mut stdout,
    )) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => client_error(&e),
    }
}

/// The configuration and a current-thread runtime for a command that talks to the admin
/// API.
fn client_setup(client: &ClientArgs) -> Result<(Config, tokio::runtime::Runtime), ExitCode> {
    let config = load(client.config.as_deref())?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| {
            eprintln!("sessiond: cannot start the runtime: {e}");
            ExitCode::FAILURE
        })?;
    Ok((config, runtime))
}

fn client_error(e: &sessiond::cli::Error) -> ExitCode {
    eprintln!("sessiond: {e}");
    if e.is_config() {
        ExitCode::from(EXIT_CONFIG)
    } else {
        ExitCode::FAILURE
    }
}

fn check(path: &std::path::Path) -> ExitCode {
    let checked = Config::from_file(path)
        .map_err(|e| e.to_string())
        .and_then(|config| {
            sessiond::server::check(&config)
                .map(|()| config)
                .map_err(|e| e.to_string())
        });
    match checked {
        Ok(config) => {
            println!(
                "{}: ok ({} configured sessions, proxy on {})",
                path.display(),
                config.sessions.len(),
                config
                    .proxy
                    .listen
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{}: {e}", path.display());
            ExitCode::from(EXIT_CONFIG)
        }
    }
}

/// `sessiond ca`: the PEM on stdout and nothing else, so `sessiond ca > ca.pem` works.
fn ca(path: Option<&std::path::Path>) -> ExitCode {
    let config = match load(path) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let ca = match CertAuthority::load_or_create(&config.tls) {
        Ok(ca) => ca,
        Err(e) => {
            eprintln!("sessiond: {e}");
            return ExitCode::FAILURE;
        }
    };
    // Not `print!`, which panics when stdout is a closed pipe.
    use std::io::Write as _;
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(ca.cert_pem().as_bytes())
        .and_then(|()| stdout.flush())
    {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sessiond: cannot write the certificate: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(config: Config) -> ExitCode {
    // Handlers go in before anything is announced: a SIGTERM sent as soon as the
    // "listening" line appears must find them.
    let mut signals = match Signals::install() {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cannot install signal handlers");
            return ExitCode::FAILURE;
        }
    };
    let daemon = match Daemon::start(config).await {
        Ok(d) => d,
        Err(e) => {
            tracing::error!(error = %e, "cannot start");
            return ExitCode::FAILURE;
        }
    };
    for addr in daemon.proxy_addrs() {
        tracing::info!(%addr, "proxy listening");
    }
    tracing::info!(addr = %daemon.admin_addr(), "admin API listening");

    signals.stop_requested().await;
    tracing::info!("shutting down: finishing in-flight requests");
    // A second signal during the drain stops at once.
    let cut = tokio::select! {
        cut = daemon.shutdown() => cut,
        _ = signals.stop_requested() => {
            tracing::warn!("second signal: exiting without waiting");
            return ExitCode::FAILURE;
        }
    };
    tracing::info!(connections_cut = cut, "stopped");
    ExitCode::SUCCESS
}

/// The signals the daemon acts on.
struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
}

impl Signals {
    fn install() -> std::io::Result<Signals> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Signals {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
            hup: signal(SignalKind::hangup())?,
        })
    }

    /// Completes on SIGTERM or SIGINT. SIGHUP would kill the process by default;
    /// reloading the file is not supported yet, so it is logged and otherwise ignored.
    async fn stop_requested(&mut self) {
        loop {
            tokio::select! {
                _ = self.term.recv() => return,
                _ = self.int.recv() => return,
                _ = self.hup.recv() => {
                    tracing::warn!("SIGHUP: reloading the configuration is not supported yet; ignoring");
                }
            }
        }
    }
}

fn init_logging(format: LogFormat) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    use std::io::IsTerminal as _;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
}
