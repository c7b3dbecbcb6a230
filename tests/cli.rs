//! The real `sessiond` binary, driven as a user or a service manager would: exit codes,
//! what it prints, that a bad file stops it before any port is bound, `sessiond ca`, JSON
//! logs, and a graceful stop on SIGTERM.
//!
//! Nothing here sleeps to synchronise: the tests wait on exit statuses and log lines, each
//! with a deadline, and a daemon left running by a failed assertion is killed by its guard.

mod common;

use std::io::Read;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::*;

/// EX_USAGE: the exit code for a configuration that cannot be used.
const EXIT_CONFIG: i32 = 64;

fn example_config() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("config/sessiond.toml")
}

#[test]
fn check_accepts_the_example_config() {
    let output = run_to_exit(sessiond().arg("check").arg("-c").arg(example_config()));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "status {:?}\nstdout: {stdout}\nstderr: {}",
        output.status,
        stderr(&output)
    );
    assert!(stdout.contains(": ok"), "stdout: {stdout}");
}

#[test]
fn check_names_an_unknown_key_and_exits_64() {
    let config = TempConfig::new("[proxy]\nlistn = \"127.0.0.1:8080\"\n");
    let output = run_to_exit(sessiond().arg("check").arg("-c").arg(config.path()));
    let err = stderr(&output);
    assert_eq!(output.status.code(), Some(EXIT_CONFIG), "stderr: {err}");
    assert!(err.contains("proxy.listn"), "stderr: {err}");
}

#[test]
fn check_of_a_missing_file_exits_64() {
    let missing = std::env::temp_dir().join(format!(
        "sessiond-cli-{}-does-not-exist.toml",
        std::process::id()
    ));
    let output = run_to_exit(sessiond().arg("check").arg("-c").arg(&missing));
    let err = stderr(&output);
    assert_eq!(output.status.code(), Some(EXIT_CONFIG), "stderr: {err}");
    assert!(err.contains("cannot read"), "stderr: {err}");
}

/// The port in the bad file is held by the test while the daemon runs. Had the daemon
/// tried to bind before validating, it would fail on the port ("cannot listen", exit 1);
/// exiting 64 with the key's name shows validation came first.
#[test]
fn run_with_a_bad_config_exits_64_before_binding() {
    let held = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    let port = held.local_addr().expect("local addr").port();
    let config = TempConfig::new(&format!(
        "[proxy]\nlisten = \"127.0.0.1:{port}\"\n\n[admin]\nlisten = \"127.0.0.1:0\"\n\n\
         [upstream]\ntimout = \"5s\"\n"
    ));
    let output = run_to_exit(sessiond().arg("run").arg("-c").arg(config.path()));
    let err = stderr(&output);
    assert_eq!(output.status.code(), Some(EXIT_CONFIG), "stderr: {err}");
    assert!(err.contains("upstream.timout"), "stderr: {err}");
    assert!(!err.contains("cannot listen"), "it tried to bind: {err}");
    assert!(!err.contains("listening"), "it started: {err}");
    drop(held);
}

/// The counterpart of the test above: the same held port with a valid file does reach
/// the bind, and fails there, with a different exit code.
#[test]
fn run_on_a_taken_port_fails_at_bind_not_as_a_config_error() {
    let held = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    let port = held.local_addr().expect("local addr").port();
    let state = TempDirPath::new("taken-state");
    let config = TempConfig::new(&format!(
        "[proxy]\nlisten = \"127.0.0.1:{port}\"\nstate_dir = {:?}\n\n[admin]\nlisten = \"127.0.0.1:0\"\n",
        state.0.display().to_string()
    ));
    let output = run_to_exit(sessiond().arg("run").arg("-c").arg(config.path()));
    let err = stderr(&output);
    assert!(!output.status.success(), "stderr: {err}");
    assert_ne!(output.status.code(), Some(EXIT_CONFIG), "stderr: {err}");
    assert!(err.contains("proxy.listen"), "stderr: {err}");
    drop(held);
}

#[test]
fn run_refuses_an_open_proxy() {
    let config =
        TempConfig::new("[proxy]\nlisten = \"0.0.0.0:0\"\n\n[admin]\nlisten = \"127.0.0.1:0\"\n");
    let output = run_to_exit(sessiond().arg("run").arg("-c").arg(config.path()));
    let err = stderr(&output);
    assert_eq!(output.status.code(), Some(EXIT_CONFIG), "stderr: {err}");
    assert!(err.contains("proxy.listen"), "stderr: {err}");
    assert!(
        err.contains("require_auth"),
        "the message should say the way out: {err}"
    );
}

#[test]
fn a_non_loopback_listener_is_accepted_with_require_auth_or_clients() {
    for restriction in [
        "[proxy]\nrequire_auth = true\nlisten = \"0.0.0.0:0\"\n",
        "[proxy]\nlisten = \"0.0.0.0:0\"\n\n[[clients]]\naddr = \"10.0.0.0/24\"\nsession = \"ci\"\n",
    ] {
        let config = TempConfig::new(restriction);
        let output = run_to_exit(sessiond().arg("check").arg("-c").arg(config.path()));
        assert!(
            output.status.success(),
            "{restriction}\nstderr: {}",
            stderr(&output)
        );
    }
}

#[test]
fn config_errors_never_print_the_secret() {
    // A control character makes the token unusable in a header; the message must say so
    // without quoting it.
    let config = TempConfig::new(
        "[sessions.api]\n\n[[sessions.api.auth]]\nscheme = \"bearer\"\n\
         token = \"hunter2\\u0001\"\nhosts = [\"api.example.com\"]\n",
    );
    let output = run_to_exit(sessiond().arg("check").arg("-c").arg(config.path()));
    let err = stderr(&output);
    assert_eq!(output.status.code(), Some(EXIT_CONFIG), "stderr: {err}");
    assert!(err.contains("sessions.api.auth[0]"), "stderr: {err}");
    assert!(!err.contains("hunter2"), "the secret leaked: {err}");

    let config =
        TempConfig::new("[upstream]\nupstream_proxy = \"https://u:hunter2@parent:3128\"\n");
    let output = run_to_exit(sessiond().arg("check").arg("-c").arg(config.path()));
    let err = stderr(&output);
    assert_eq!(output.status.code(), Some(EXIT_CONFIG), "stderr: {err}");
    assert!(err.contains("upstream.upstream_proxy"), "stderr: {err}");
    assert!(!err.contains("hunter2"), "the password leaked: {err}");
}

#[test]
fn env_secrets_are_read_at_load_time() {
    let var = format!("SESSIOND_CLI_TEST_TOKEN_{}", std::process::id());
    let config = TempConfig::new(&format!(
        "[sessions.api]\n\n[[sessions.api.auth]]\nscheme = \"bearer\"\n\
         token_env = \"{var}\"\nhosts = [\"api.example.com\"]\n"
    ));

    let output = run_to_exit(
        sessiond()
            .env_remove(&var)
            .arg("check")
            .arg("-c")
            .arg(config.path()),
    );
    let err = stderr(&output);
    assert_eq!(output.status.code(), Some(EXIT_CONFIG), "stderr: {err}");
    assert!(
        err.contains("sessions.api.auth[0].token_env"),
        "stderr: {err}"
    );
    assert!(
        err.contains(&var),
        "the message should name the variable: {err}"
    );

    let output = run_to_exit(
        sessiond()
            .env(&var, "hunter2")
            .arg("check")
            .arg("-c")
            .arg(config.path()),
    );
    assert!(output.status.success(), "stderr: {}", stderr(&output));
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        stderr(&output)
    );
    assert!(!all.contains("hunter2"), "the secret leaked: {all}");
}

#[test]
fn ca_prints_the_certificate_it_creates_then_the_same_one() {
    use std::os::unix::fs::PermissionsExt as _;
    let state = TempDirPath::new("ca-state");
    let config = TempConfig::new(&format!(
        "[proxy]\nstate_dir = {:?}\n",
        state.0.display().to_string()
    ));

    let first = run_to_exit(sessiond().arg("ca").arg("-c").arg(config.path()));
    assert!(first.status.success(), "stderr: {}", stderr(&first));
    let pem = String::from_utf8_lossy(&first.stdout).into_owned();
    assert!(
        pem.starts_with("-----BEGIN CERTIFICATE-----\n"),
        "stdout: {pem}"
    );
    assert!(
        pem.ends_with("-----END CERTIFICATE-----\n"),
        "stdout: {pem}"
    );
    assert!(
        stderr(&first).contains("created a local CA"),
        "stderr: {}",
        stderr(&first)
    );
    let key = state.0.join("ca.key");
    let mode = std::fs::metadata(&key)
        .expect("ca.key exists")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let key_pem = std::fs::read_to_string(&key).unwrap();
    let key_line = key_pem.lines().nth(1).expect("a key body");
    assert!(!pem.contains(key_line) && !stderr(&first).contains(key_line));

    let second = run_to_exit(sessiond().arg("ca").arg("-c").arg(config.path()));
    assert!(second.status.success(), "stderr: {}", stderr(&second));
    assert_eq!(String::from_utf8_lossy(&second.stdout), pem, "the same CA");
    assert!(!stderr(&second).contains("created a local CA"));
    assert_eq!(std::fs::read_to_string(&key).unwrap(), key_pem);
}

#[test]
fn ca_with_missing_configured_files_exits_1_naming_the_file() {
    let dir = TempDirPath::new("ca-missing");
    let config = TempConfig::new(&format!(
        "[tls]\nca_cert = {:?}\nca_key = {:?}\n",
        dir.0.join("mine.crt").display().to_string(),
        dir.0.join("mine.key").display().to_string()
    ));

    let output = run_to_exit(sessiond().arg("ca").arg("-c").arg(config.path()));

    let err = stderr(&output);
    assert_eq!(output.status.code(), Some(1), "stderr: {err}");
    assert!(err.contains("mine.crt"), "stderr: {err}");
    assert!(output.stdout.is_empty());
    assert!(!dir.0.exists(), "a configured CA is never created");
}

#[test]
fn json_logs_then_a_graceful_stop_on_sigterm() {
    let state = TempDirPath::new("json-state");
    let config = TempConfig::new(&format!(
        "[proxy]\nlisten = \"127.0.0.1:0\"\nstate_dir = {:?}\n\n[admin]\nlisten = \"127.0.0.1:0\"\n",
        state.0.display().to_string()
    ));
    let mut daemon = Daemon::start(&config, &["--log-format", "json"]);

    let proxy =
        json(&daemon.wait_for_line("\"proxy listening\"", |l| l.contains("proxy listening")));
    assert_eq!(proxy["message"], "proxy listening", "{proxy}");
    assert_eq!(proxy["level"], "INFO", "{proxy}");
    assert_ne!(logged_addr(&proxy).port(), 0, "{proxy}");

    let admin = json(&daemon.wait_for_line("\"admin API listening\"", |l| {
        l.contains("admin API listening")
    }));
    let health = http_get(logged_addr(&admin), "/healthz");
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");

    signal(daemon.pid, "TERM");
    let status = daemon.wait();
    assert_eq!(status.code(), Some(0), "a SIGTERM stop is a clean exit");
    let rest = daemon.remaining_lines();
    assert!(
        rest.iter().any(|l| json(l)["message"] == "stopped"),
        "no \"stopped\" line after SIGTERM:\n{}",
        rest.join("\n")
    );
}

#[test]
fn check_loads_configured_ca_files_without_creating_them() {
    let missing = std::env::temp_dir().join(format!("sessiond-cli-no-ca-{}", std::process::id()));
    let config = TempConfig::new(&format!(
        "[tls]\nca_cert = {:?}\nca_key = {:?}\n",
        missing.join("ca.pem").display().to_string(),
        missing.join("ca.key").display().to_string()
    ));
    let output = run_to_exit(sessiond().arg("check").arg("-c").arg(config.path()));
    let err = stderr(&output);
    assert_eq!(output.status.code(), Some(EXIT_CONFIG), "stderr: {err}");
    assert!(err.contains("ca.pem"), "stderr: {err}");
    assert!(!missing.exists(), "check created files");
}

/// A daemon on ephemeral ports with its own state directory, and a second configuration
/// for the CLI naming the admin API's port as read from the "admin API listening" line.
struct AdminDaemon {
    daemon: Daemon,
    admin: SocketAddr,
    proxy: SocketAddr,
    _config: TempConfig,
    _state: TempDirPath,
}

impl AdminDaemon {
    /// `admin_extra` is more of the daemon's `[admin]` table, e.g. a token.
    fn start(admin_extra: &str) -> AdminDaemon {
        let state = TempDirPath::new("admin-state");
        let config = TempConfig::new(&format!(
            "[proxy]\nlisten = \"127.0.0.1:0\"\nstate_dir = {:?}\n\n\
             [admin]\nlisten = \"127.0.0.1:0\"\n{admin_extra}",
            state.0.display().to_string()
        ));
        let daemon = Daemon::start(&config, &["--log-format", "json"]);
        // The proxy's line comes first.
        let proxy =
            json(&daemon.wait_for_line("\"proxy listening\"", |l| l.contains("proxy listening")));
        let line = json(&daemon.wait_for_line("\"admin API listening\"", |l| {
            l.contains("admin API listening")
        }));
        AdminDaemon {
            admin: logged_addr(&line),
            proxy: logged_addr(&proxy),
            daemon,
            _config: config,
            _state: state,
        }
    }

    /// A configuration for the CLI: this daemon's admin address, plus `extra` in `[admin]`.
    fn client_config(&self, extra: &str) -> TempConfig {
        TempConfig::new(&format!("[admin]\nlisten = \"{}\"\n{extra}", self.admin))
    }
}

/// `sessiond ARGS -c CONFIG`, run to its exit.
fn cli(config: &TempConfig, args: &[&str]) -> Output {
    run_to_exit(sessiond().args(args).arg("-c").arg(config.path()))
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[track_caller]
fn assert_success(output: &Output) {
    assert!(
        output.status.success(),
        "status {:?}\nstdout: {}\nstderr: {}",
        output.status,
        stdout(output),
        stderr(output)
    );
}

#[test]
fn health_exits_0_against_a_running_daemon_and_1_once_it_is_gone() {
    let mut running = AdminDaemon::start("");
    let client = running.client_config("");

    let up = cli(&client, &["health"]);
    assert_success(&up);
    assert!(up.stdout.is_empty(), "stdout: {}", stdout(&up));
    assert!(up.stderr.is_empty(), "stderr: {}", stderr(&up));

    signal(running.daemon.pid, "TERM");
    assert_eq!(running.daemon.wait().code(), Some(0));
    let down = cli(&client, &["health"]);
    let err = stderr(&down);
    assert_eq!(down.status.code(), Some(1), "stderr: {err}");
    assert!(err.contains("nothing listens"), "stderr: {err}");
    assert!(err.contains(&running.admin.to_string()), "stderr: {err}");
}

#[test]
fn a_client_config_whose_admin_port_is_0_is_a_config_error() {
    let config = TempConfig::new("[admin]\nlisten = \"127.0.0.1:0\"\n");
    let output = cli(&config, &["health"]);
    let err = stderr(&output);
    assert_eq!(output.status.code(), Some(EXIT_CONFIG), "stderr: {err}");
    assert!(err.contains("admin.listen"), "stderr: {err}");
}

#[test]
fn sessions_list_shows_default() {
    let running = AdminDaemon::start("");
    let client = running.client_config("");

    let list = cli(&client, &["sessions", "list"]);
    assert_success(&list);
    let text = stdout(&list);
    let default = text
        .lines()
        .find(|l| l.split_whitespace().next() == Some("default"))
        .unwrap_or_else(|| panic!("no default line: {text}"));
    assert!(default.contains("configured"), "{text}");
    assert!(default.contains("in memory"), "{text}");

    let as_json = cli(&client, &["sessions", "list", "--json"]);
    assert_success(&as_json);
    let value: serde_json::Value = serde_json::from_str(&stdout(&as_json)).expect("JSON");
    assert!(
        value["sessions"]
            .as_array()
            .expect("a sessions array")
            .iter()
            .any(|s| s["name"] == "default"),
        "{value}"
    );

    // `list` is the default.
    let bare = cli(&client, &["sessions"]);
    assert_success(&bare);
    assert_eq!(stdout(&bare), text);
}

#[test]
fn cookies_imported_from_a_cookies_txt_are_exported_again() {
    let running = AdminDaemon::start("");
    let client = running.client_config("");
    let jar = TempConfig::new(
        "# Netscape HTTP Cookie File\n\
         .example.com\tTRUE\t/\tFALSE\t0\tsid\tabc123\n\
         #HttpOnly_api.example.com\tFALSE\t/v1\tTRUE\t4102444800\ttok\txyz\n",
    );

    let import = cli(
        &client,
        &["cookies", "import", "web", jar.path().to_str().unwrap()],
    );
    assert_success(&import);
    assert_eq!(stdout(&import), "imported 2 cookies into session \"web\"\n");

    let export = cli(
        &client,
        &["cookies", "export", "web", "--format", "netscape"],
    );
    assert_success(&export);
    let text = stdout(&export);
    assert!(text.starts_with("# Netscape HTTP Cookie File\n"), "{text}");
    assert!(
        text.contains(".example.com\tTRUE\t/\tFALSE\t0\tsid\tabc123\n"),
        "{text}"
    );
    assert!(
        text.contains("#HttpOnly_api.example.com\tFALSE\t/v1\tTRUE\t4102444800\ttok\txyz\n"),
        "{text}"
    );
    // Netscape is the default format.
    let default = cli(&client, &["cookies", "export", "web"]);
    assert_success(&default);
    assert_eq!(stdout(&default), text);

    let as_json = cli(&client, &["cookies", "export", "web", "--format", "json"]);
    assert_success(&as_json);
    let value: serde_json::Value = serde_json::from_str(&stdout(&as_json)).expect("JSON");
    let cookies = value.as_array().expect("a JSON array");
    assert_eq!(cookies.len(), 2, "{value}");
}

#[test]
fn cookies_import_reads_stdin_and_replace_puts() {
    let running = AdminDaemon::start("");
    let client = running.client_config("");
    let first = TempConfig::new(
        "# Netscape HTTP Cookie File\n\
         .example.com\tTRUE\t/\tFALSE\t0\told\t1\n",
    );
    assert_success(&cli(
        &client,
        &["cookies", "import", "web", first.path().to_str().unwrap()],
    ));

    let replaced = run_to_exit_with_stdin(
        sessiond()
            .args(["cookies", "import", "web", "-", "--replace", "-c"])
            .arg(client.path()),
        Some(b"# Netscape HTTP Cookie File\nnew.example.com\tFALSE\t/\tFALSE\t0\tnew\t2\n"),
    );
    assert_success(&replaced);
    assert_eq!(
        stdout(&replaced),
        "replaced the cookies of session \"web\" with 1 cookie\n"
    );

    let export = cli(&client, &["cookies", "export", "web"]);
    assert_success(&export);
    let text = stdout(&export);
    assert!(text.contains("\tnew\t2\n"), "{text}");
    assert!(
        !text.contains("\told\t"),
        "--replace kept the old cookie: {text}"
    );
}

#[test]
fn a_malformed_import_exits_1_with_the_line() {
    let running = AdminDaemon::start("");
    let client = running.client_config("");
    let bad = TempConfig::new("# Netscape HTTP Cookie File\nnot a cookie line\n");
    let output = cli(
        &client,
        &["cookies", "import", "web", bad.path().to_str().unwrap()],
    );
    let err = stderr(&output);
    assert_eq!(output.status.code(), Some(1), "stderr: {err}");
    assert!(err.contains("line 2"), "stderr: {err}");
    assert!(err.contains("(400)"), "stderr: {err}");
}

#[test]
fn sessions_delete_then_show_fails_with_the_message() {
    let running = AdminDaemon::start("");
    let client = running.client_config("");
    let jar = TempConfig::new(
        "# Netscape HTTP Cookie File\n\
         .example.com\tTRUE\t/\tFALSE\t0\tsid\tabc123\n",
    );
    assert_success(&cli(
        &client,
        &["cookies", "import", "dyn", jar.path().to_str().unwrap()],
    ));

    let shown = cli(&client, &["sessions", "show", "dyn"]);
    assert_success(&shown);
    let text = stdout(&shown);
    assert!(text.contains("\n  \"name\": \"dyn\""), "not pretty: {text}");
    let value: serde_json::Value = serde_json::from_str(&text).expect("JSON");
    assert_eq!(value["cookies"], 1, "{value}");

    let deleted = cli(&client, &["sessions", "delete", "dyn"]);
    assert_success(&deleted);

    let gone = cli(&client, &["sessions", "show", "dyn"]);
    let err = stderr(&gone);
    assert_eq!(gone.status.code(), Some(1), "stderr: {err}");
    assert!(gone.stdout.is_empty(), "stdout: {}", stdout(&gone));
    assert_eq!(err.trim_end(), "sessiond: no session \"dyn\" (404)");

    let listed = cli(&client, &["sessions", "list"]);
    assert_success(&listed);
    assert!(
        !stdout(&listed).lines().any(|l| l.starts_with("dyn ")),
        "{}",
        stdout(&listed)
    );
}

#[test]
fn the_admin_token_is_sent_and_a_wrong_one_is_refused() {
    let running = AdminDaemon::start("token = \"t0k3n-cli\"\n");

    let right = running.client_config("token = \"t0k3n-cli\"\n");
    let list = cli(&right, &["sessions", "list"]);
    assert_success(&list);
    assert!(stdout(&list).contains("default"), "{}", stdout(&list));
    assert_success(&cli(&right, &["health"]));

    for wrong in [
        running.client_config("token = \"nope\"\n"),
        running.client_config(""),
    ] {
        let refused = cli(&wrong, &["sessions", "list"]);
        let err = stderr(&refused);
        assert_eq!(refused.status.code(), Some(1), "stderr: {err}");
        assert!(err.contains("Bearer"), "stderr: {err}");
        assert!(err.contains("(401)"), "stderr: {err}");
        assert!(!err.contains("t0k3n-cli"), "the token leaked: {err}");
        assert_eq!(cli(&wrong, &["health"]).status.code(), Some(1));
    }
}

/// `sessiond events --session watched --json` receives the exchange a request in that
/// session causes, and not one in another session. The request goes through the proxy to
/// the daemon's own admin API, a loop the proxy answers with `508`: still an exchange of
/// session `watched`. Requests are repeated until the subscriber (connecting in its own
/// process) sees one, since nothing says when it has subscribed.
#[test]
fn events_prints_the_exchanges_of_the_watched_session() {
    let running = AdminDaemon::start("token = \"t0k3n-events\"\n");
    let client = running.client_config("token = \"t0k3n-events\"\n");
    let mut child = sessiond()
        .args(["events", "--session", "watched", "--json", "-c"])
        .arg(client.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start sessiond events");
    let pid = child.id();
    let guard = KillOnDrop(pid);
    let lines = lines_of(child.stdout.take().expect("piped stdout"));

    let until = Instant::now() + DEADLINE;
    let line = loop {
        // Another session first: its event must not reach this subscriber.
        for session in ["other", "watched"] {
            let answer = proxied_get(running.proxy, running.admin, session);
            assert!(answer.starts_with("HTTP/1.1 508"), "{answer}");
        }
        match lines.recv_timeout(Duration::from_millis(200)) {
            Ok(line) => break line,
            Err(mpsc::RecvTimeoutError::Timeout) if Instant::now() < until => continue,
            Err(e) => {
                signal(pid, "KILL");
                let mut err = String::new();
                let _ = child.stderr.take().map(|mut e| e.read_to_string(&mut err));
                panic!("no event line within {DEADLINE:?} ({e:?}); stderr: {err}");
            }
        }
    };
    let event = json(&line);
    assert_eq!(event["session"], "watched", "{line}");
    assert_eq!(event["status"], 508, "{line}");
    assert_eq!(event["method"], "GET", "{line}");
    assert!(line.contains("\"session\":\"watched\""), "{line}");

    drop(guard);
    let _ = child.wait();
}

/// `GET http://ADMIN/healthz` through the proxy at `proxy`, in `session`.
fn proxied_get(proxy: SocketAddr, admin: SocketAddr, session: &str) -> String {
    http_request(
        proxy,
        &format!("http://{admin}/healthz"),
        &admin.to_string(),
        &format!("X-Session: {session}\r\n"),
    )
}
