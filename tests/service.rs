//! The real binary as a service manager runs it: `SIGHUP` reloads (a good file applies, a
//! broken one changes nothing), `NOTIFY_SOCKET` hears READY/RELOADING/STOPPING and
//! watchdog pings, `SIGTERM` lets an exchange in flight finish, and the log options.
//!
//! No sleeps: every step waits on a log line, a datagram, a channel or an exit status,
//! each with a deadline.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener};
use std::os::unix::net::UnixDatagram;
use std::sync::mpsc;
use std::thread;

use common::*;

/// An origin on a thread: answers each request with the request's head as its body, after
/// `hold` (if given) lets it go. Sends `()` on `arrived` as each request's head is read.
struct Origin {
    addr: SocketAddr,
    arrived: mpsc::Receiver<()>,
}

impl Origin {
    fn start(hold: Option<mpsc::Receiver<()>>) -> Origin {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the origin");
        let addr = listener.local_addr().expect("origin address");
        let (tx, arrived) = mpsc::channel();
        thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { break };
                let mut head = String::new();
                let mut reader = BufReader::new(stream.try_clone().expect("clone the stream"));
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                        break;
                    }
                    head.push_str(&line);
                }
                let _ = tx.send(());
                if let Some(hold) = &hold {
                    let _ = hold.recv_timeout(DEADLINE);
                }
                let _ = write!(
                    stream,
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{head}",
                    head.len()
                );
            }
        });
        Origin { addr, arrived }
    }
}

/// `GET http://ORIGIN/` through the proxy; the whole response as text.
fn get_through(proxy: SocketAddr, origin: SocketAddr) -> String {
    http_request(proxy, &format!("http://{origin}/"), &origin.to_string(), "")
}

/// A daemon on ephemeral ports whose config file the test rewrites.
fn config_with(state: &TempDirPath, rest: &str) -> String {
    format!(
        "[proxy]\nlisten = \"127.0.0.1:0\"\nstate_dir = {:?}\n{rest}\n[admin]\nlisten = \"127.0.0.1:0\"\n",
        state.0.display().to_string()
    )
}

fn proxy_addr(daemon: &Daemon) -> SocketAddr {
    logged_addr(&json(&daemon.wait_for_line("\"proxy listening\"", |l| {
        l.contains("proxy listening")
    })))
}

#[test]
fn sighup_applies_a_good_file_and_keeps_the_old_one_when_the_new_is_broken() {
    let origin = Origin::start(None);
    let state = TempDirPath::new("reload-state");
    let config = TempConfig::new(&config_with(
        &state,
        "[template]\nheaders = { \"X-Stage\" = \"one\" }\n",
    ));
    let daemon = Daemon::start(&config, &["--log-format", "json"]);
    let proxy = proxy_addr(&daemon);
    let first = get_through(proxy, origin.addr);
    assert!(first.contains("x-stage: one"), "{first}");

    // A changed header applies; a changed listener limit needs a restart and says so.
    std::fs::write(
        config.path(),
        config_with(
            &state,
            "max_connections = 10\n[template]\nheaders = { \"X-Stage\" = \"two\" }\n",
        ),
    )
    .expect("rewrite the config");
    signal(daemon.pid, "HUP");
    let restart = json(&daemon.wait_for_line("naming the fixed key", |l| {
        l.contains("only a restart applies it")
    }));
    assert_eq!(restart["key"], "proxy.max_connections", "{restart}");
    let reloaded = json(&daemon.wait_for_line("\"configuration reloaded\"", |l| {
        l.contains("configuration reloaded")
    }));
    assert_eq!(reloaded["restart_needed"], 1, "{reloaded}");
    let second = get_through(proxy, origin.addr);
    assert!(second.contains("x-stage: two"), "{second}");
    assert!(!second.contains("x-stage: one"), "{second}");

    // A file that does not validate changes nothing, and the log says which key and why.
    std::fs::write(
        config.path(),
        config_with(
            &state,
            "[template]\nheaders = { \"X-Stage\" = \"three\" }\nhedaers = {}\n",
        ),
    )
    .expect("rewrite the config");
    signal(daemon.pid, "HUP");
    let failed = json(&daemon.wait_for_line("\"reload failed\"", |l| l.contains("reload failed")));
    assert_eq!(failed["level"], "ERROR", "{failed}");
    assert!(
        failed["error"]
            .as_str()
            .is_some_and(|e| e.contains("template.hedaers")),
        "the error names the key: {failed}"
    );
    let third = get_through(proxy, origin.addr);
    assert!(third.contains("x-stage: two"), "{third}");
    assert!(!third.contains("three"), "{third}");
}

/// A unix datagram socket standing in for systemd's `NOTIFY_SOCKET`.
struct NotifySocket {
    socket: UnixDatagram,
    /// The socket's path, for the daemon's environment.
    path: String,
    _dir: TempDirPath,
}

impl NotifySocket {
    fn bind(name: &str) -> NotifySocket {
        let dir = TempDirPath::new(name);
        std::fs::create_dir_all(&dir.0).expect("create the socket dir");
        let path = dir.0.join("notify.sock");
        let socket = UnixDatagram::bind(&path).expect("bind the notify socket");
        socket
            .set_read_timeout(Some(DEADLINE))
            .expect("set a read timeout");
        NotifySocket {
            socket,
            path: path.display().to_string(),
            _dir: dir,
        }
    }

    /// The next datagram that has the line `want`, skipping others (watchdog pings).
    fn next_with(&self, want: &str) -> String {
        let mut seen = Vec::new();
        let mut buf = vec![0u8; 4096];
        loop {
            match self.socket.recv(&mut buf) {
                Ok(n) => {
                    let text = String::from_utf8_lossy(&buf[..n]).into_owned();
                    if text.lines().any(|l| l == want) {
                        return text;
                    }
                    seen.push(text);
                }
                Err(e) => panic!("no {want} datagram ({e}); got {seen:?}"),
            }
        }
    }
}

#[test]
fn the_service_manager_hears_ready_reloading_watchdog_and_stopping() {
    let notify = NotifySocket::bind("notify");
    let state = TempDirPath::new("notify-state");
    let config = TempConfig::new(&config_with(&state, ""));
    let mut daemon = Daemon::start_with_env(
        &config,
        &["--log-format", "json"],
        &[
            ("NOTIFY_SOCKET", notify.path.as_str()),
            ("WATCHDOG_USEC", "200000"),
        ],
    );

    // READY=1 comes with the addresses, and only once they accept connections.
    let ready = notify.next_with("READY=1");
    let status = ready
        .lines()
        .find_map(|l| l.strip_prefix("STATUS="))
        .unwrap_or_else(|| panic!("no STATUS with READY: {ready:?}"));
    let admin: SocketAddr = status
        .rsplit_once("admin on ")
        .and_then(|(_, a)| a.parse().ok())
        .unwrap_or_else(|| panic!("no admin address in {status:?}"));
    let health = http_get(admin, "/healthz");
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");

    notify.next_with("WATCHDOG=1");

    signal(daemon.pid, "HUP");
    let reloading = notify.next_with("RELOADING=1");
    assert!(
        reloading.lines().any(|l| l.starts_with("MONOTONIC_USEC=")),
        "{reloading:?}"
    );
    notify.next_with("READY=1");

    signal(daemon.pid, "TERM");
    notify.next_with("STOPPING=1");
    assert_eq!(daemon.wait().code(), Some(0));
}

#[test]
fn sigterm_lets_an_exchange_in_flight_finish_then_exits_0() {
    let (release, hold) = mpsc::channel();
    let origin = Origin::start(Some(hold));
    let state = TempDirPath::new("drain-state");
    let config = TempConfig::new(&config_with(&state, "shutdown_grace = \"30s\"\n"));
    let mut daemon = Daemon::start(&config, &["--log-format", "json"]);
    let proxy = proxy_addr(&daemon);

    let target = origin.addr;
    let client = thread::spawn(move || get_through(proxy, target));
    origin
        .arrived
        .recv_timeout(DEADLINE)
        .expect("the request reaches the origin");
    signal(daemon.pid, "TERM");
    daemon.wait_for_line("\"shutting down\"", |l| l.contains("shutting down"));
    // Only now may the origin answer: the daemon is draining.
    release.send(()).expect("release the origin");
    let response = client.join().expect("the client thread");
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.contains("GET / HTTP/1.1"), "{response}");
    assert_eq!(daemon.wait().code(), Some(0), "a drained stop exits 0");
    let rest = daemon.remaining_lines();
    let stopped = rest
        .iter()
        .map(|l| json(l))
        .find(|l| l["message"] == "stopped")
        .unwrap_or_else(|| panic!("no \"stopped\" line:\n{}", rest.join("\n")));
    assert_eq!(stopped["connections_cut"], 0, "{stopped}");
}

#[test]
fn json_access_lines_carry_the_exchange_and_log_level_filters() {
    let origin = Origin::start(None);
    let state = TempDirPath::new("log-state");
    let config = TempConfig::new(&config_with(&state, ""));
    // With only warnings and access lines let through, the "listening" lines are not
    // logged: the proxy's address comes from the readiness message instead.
    let notify = NotifySocket::bind("log-notify");
    let daemon = Daemon::start_with_env(
        &config,
        &[
            "--log-format",
            "json",
            "--log-level",
            "warn,sessiond::access=info",
        ],
        &[("NOTIFY_SOCKET", notify.path.as_str())],
    );
    let ready = notify.next_with("READY=1");
    let proxy: SocketAddr = ready
        .lines()
        .find_map(|l| l.strip_prefix("STATUS=proxy on "))
        .and_then(|rest| rest.split([' ', ',']).next())
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("no proxy address in {ready:?}"));

    let response = get_through(proxy, origin.addr);
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    let first = json(&daemon.wait_for_line("any line", |_| true));
    assert_eq!(
        first["target"], "sessiond::access",
        "the first line logged is the access line: {first}"
    );
    assert!(first["timestamp"].is_string(), "{first}");
    assert_eq!(first["level"], "INFO", "{first}");
    assert_eq!(first["session"], "default", "{first}");
    assert_eq!(first["method"], "GET", "{first}");
    assert_eq!(first["status"], 200, "{first}");
    assert_eq!(first["url"], format!("http://{}/", origin.addr), "{first}");

    // A word that is not a level is refused before anything starts.
    let bad = run_to_exit(
        sessiond()
            .args(["--log-level", "verbose", "run", "-c"])
            .arg(config.path()),
    );
    assert_eq!(bad.status.code(), Some(64));
    assert!(
        stderr(&bad).contains("\"verbose\" is not a level"),
        "{}",
        stderr(&bad)
    );
}
