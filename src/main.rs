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
    /// What to log: a level (error, warn, info, debug, trace) or RUST_LOG-style
    /// directives such as `info,sessiond=debug`. Wins over RUST_LOG; without either, info.
    #[arg(long, global = true, value_name = "FILTER")]
    log_level: Option<String>,
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
        /// Write the certificate to this file (mode 0644, replaced atomically) instead of
        /// stdout: for a volume shared with application containers, or the system's trust
        /// store directory.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
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
    if let Err(e) = init_logging(cli.log_format, cli.log_level.as_deref()) {
        eprintln!("sessiond: --log-level: {e}");
        return ExitCode::from(EXIT_CONFIG);
    }
    match cli.command.unwrap_or(Command::Run { config: None }) {
        Command::Check { config } => check(&config),
        Command::Ca { config, out } => ca(config.as_deref(), out.as_deref()),
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
        Command::Run { config: path } => {
            let config = match load(path.as_deref()) {
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
            runtime.block_on(run(config, path))
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

/// `sessiond ca`: the PEM on stdout and nothing else, so `sessiond ca > ca.pem` works; or
/// into `--out FILE`.
fn ca(path: Option<&std::path::Path>, out: Option<&std::path::Path>) -> ExitCode {
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
    let pem = ca.cert_pem().as_bytes();
    let written = match out {
        Some(file) => write_public_file(file, pem)
            .map_err(|e| format!("cannot write {}: {e}", file.display())),
        // Not `print!`, which panics when stdout is a closed pipe.
        None => {
            use std::io::Write as _;
            let mut stdout = std::io::stdout().lock();
            stdout
                .write_all(pem)
                .and_then(|()| stdout.flush())
                .map_err(|e| format!("cannot write the certificate: {e}"))
        }
    };
    match written {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sessiond: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Writes `bytes` to `file` with mode 0644 through a temporary file in the same directory,
/// so a reader never sees half a certificate.
fn write_public_file(file: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let name = file
        .file_name()
        .ok_or_else(|| std::io::Error::other("the path names no file"))?;
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(format!(".tmp-{}", std::process::id()));
    let tmp = file.with_file_name(tmp_name);
    let written = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .open(&tmp)
        .and_then(|mut f| {
            // Set again: the mode given at creation is cut by the umask (0077 under the
            // systemd unit), and this file is meant for other users to read.
            use std::os::unix::fs::PermissionsExt as _;
            f.set_permissions(std::fs::Permissions::from_mode(0o644))?;
            f.write_all(bytes)?;
            f.sync_all()
        })
        .and_then(|()| std::fs::rename(&tmp, file));
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

async fn run(config: Config, path: Option<PathBuf>) -> ExitCode {
    // Handlers go in before anything is announced: a SIGTERM sent as soon as the
    // "listening" line appears must find them.
    let mut signals = match Signals::install() {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cannot install signal handlers");
            return ExitCode::FAILURE;
        }
    };
    let mut daemon = match Daemon::start(config).await {
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
    let status = status_line(&daemon);
    systemd::notify(&[
        sd_notify::NotifyState::Ready,
        sd_notify::NotifyState::Status(&status),
    ]);
    let _watchdog = systemd::watchdog();

    while signals.next().await == Signal::Reload {
        reload(&mut daemon, path.as_deref());
    }
    tracing::info!("shutting down: finishing in-flight requests");
    systemd::notify(&[sd_notify::NotifyState::Stopping]);
    // A second stop signal during the drain stops at once; SIGHUP is ignored by now.
    let shutdown = daemon.shutdown();
    tokio::pin!(shutdown);
    let cut = loop {
        tokio::select! {
            cut = &mut shutdown => break cut,
            signal = signals.next() => if signal == Signal::Stop {
                tracing::warn!("second signal: exiting without waiting");
                return ExitCode::FAILURE;
            },
        }
    };
    tracing::info!(connections_cut = cut, "stopped");
    ExitCode::SUCCESS
}

/// SIGHUP: read the file again and apply it, or keep running as before and say why.
fn reload(daemon: &mut Daemon, path: Option<&std::path::Path>) {
    let Some(path) = path else {
        tracing::warn!("SIGHUP: running on the built-in defaults (no -c FILE): nothing to reload");
        return;
    };
    let mut reloading = vec![sd_notify::NotifyState::Reloading];
    // systemd 253+ wants the time with RELOADING=1 to tell this reload from an older one.
    if let Ok(now) = sd_notify::NotifyState::monotonic_usec_now() {
        reloading.push(now);
    }
    systemd::notify(&reloading);
    let outcome = Config::from_file(path)
        .map_err(|e| e.to_string())
        .and_then(|config| daemon.reload(config).map_err(|e| e.to_string()));
    match outcome {
        Ok(restart_needed) => {
            for key in &restart_needed {
                tracing::warn!(
                    key = %key,
                    "changed in the file, but only a restart applies it; the running value stays"
                );
            }
            tracing::info!(
                file = %path.display(),
                restart_needed = restart_needed.len(),
                "configuration reloaded"
            );
        }
        Err(e) => tracing::error!(
            file = %path.display(),
            error = %e,
            "reload failed; the running configuration stays in force"
        ),
    }
    let status = status_line(daemon);
    systemd::notify(&[
        sd_notify::NotifyState::Ready,
        sd_notify::NotifyState::Status(&status),
    ]);
}

/// What `systemctl status` shows once the daemon is ready.
fn status_line(daemon: &Daemon) -> String {
    let proxies: Vec<String> = daemon.proxy_addrs().iter().map(|a| a.to_string()).collect();
    format!(
        "proxy on {}, admin on {}",
        proxies.join(" "),
        daemon.admin_addr()
    )
}

/// The service manager's side: readiness, reloads, stopping and watchdog pings, sent
/// when `NOTIFY_SOCKET` is set (by systemd for `Type=notify`) and skipped otherwise.
mod systemd {
    use std::time::Duration;

    use sd_notify::NotifyState;

    pub fn notify(states: &[NotifyState<'_>]) {
        if let Err(e) = sd_notify::notify(states) {
            tracing::warn!(error = %e, "cannot notify the service manager");
        }
    }

    /// Pings the watchdog at half its interval while the runtime runs, if systemd asked
    /// for it (`WatchdogSec=`). The pings come from a runtime task, so a stuck runtime
    /// stops them and systemd restarts the daemon. Dropping the handle stops them.
    pub fn watchdog() -> Option<Pinger> {
        let every = sd_notify::watchdog_enabled()? / 2;
        tracing::info!(interval = ?every, "pinging the systemd watchdog");
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(every.max(Duration::from_millis(10)));
            loop {
                tick.tick().await;
                notify(&[NotifyState::Watchdog]);
            }
        });
        Some(Pinger(task))
    }

    pub struct Pinger(tokio::task::JoinHandle<()>);

    impl Drop for Pinger {
        fn drop(&mut self) {
            self.0.abort();
        }
    }
}

/// What a signal asks for.
#[derive(Debug, PartialEq, Eq)]
enum Signal {
    /// SIGTERM or SIGINT.
    Stop,
    /// SIGHUP.
    Reload,
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

    async fn next(&mut self) -> Signal {
        tokio::select! {
            _ = self.term.recv() => Signal::Stop,
            _ = self.int.recv() => Signal::Stop,
            _ = self.hup.recv() => Signal::Reload,
        }
    }
}

fn init_logging(format: LogFormat, level: Option<&str>) -> Result<(), String> {
    use tracing_subscriber::EnvFilter;
    let filter = match level {
        // A lone word would be read as a target name: `verbose` would log nothing.
        Some(word)
            if !word.contains(['=', ',', '[', ':'])
                && word
                    .parse::<tracing_subscriber::filter::LevelFilter>()
                    .is_err() =>
        {
            return Err(format!(
                "{word:?} is not a level (error, warn, info, debug, trace, off) nor a directive like info,sessiond=debug"
            ));
        }
        Some(directives) => EnvFilter::try_new(directives).map_err(|e| e.to_string())?,
        None => EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
    };
    use std::io::IsTerminal as _;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
    Ok(())
}
