//! The real binary as a separate process: what only a process can show (its memory while
//! streaming, its environment).

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use bytes::Bytes;
use hyper::body::Frame;

use crate::support::*;

/// A `sessiond run` child process, killed on drop.
struct Spawned {
    child: Child,
    addr: SocketAddr,
    /// The daemon's JSON log lines, as they come.
    logs: mpsc::Receiver<String>,
}

impl Spawned {
    /// Starts the binary on 127.0.0.1:0 and waits for its "proxy listening" log line.
    fn start(extra_env: &[(&str, &str)]) -> Spawned {
        Spawned::with_config("", extra_env)
    }

    /// As `start`, with extra config after `[proxy]` and `[admin]`, and `RUST_LOG` settable
    /// through `extra_env`.
    fn with_config(extra_toml: &str, extra_env: &[(&str, &str)]) -> Spawned {
        Spawned::with_state(&temp_path("state"), extra_toml, extra_env)
    }

    /// As `with_config`, keeping its state in `state_dir` (to start again on it).
    fn with_state(
        state_dir: &std::path::Path,
        extra_toml: &str,
        extra_env: &[(&str, &str)],
    ) -> Spawned {
        let config = std::env::temp_dir().join(format!(
            "sessiond-daemon-test-{}-{}.toml",
            std::process::id(),
            rand_suffix()
        ));
        std::fs::write(
            &config,
            format!(
                "[proxy]\nlisten = [\"127.0.0.1:0\"]\nstate_dir = \"{}\"\n[admin]\nlisten = \"127.0.0.1:0\"\n{extra_toml}",
                state_dir.display()
            ),
        )
        .unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_sessiond"));
        cmd.args(["--log-format", "json", "run", "-c"])
            .arg(&config)
            .env("RUST_LOG", "warn,sessiond=info,sessiond::access=warn")
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (k, v) in extra_env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("the sessiond binary starts");
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = mpsc::channel();
        // Keep draining stderr for the life of the process so it never blocks on a full pipe.
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let addr = loop {
            let line = rx
                .recv_timeout(Duration::from_secs(60))
                .expect("sessiond logs that it is listening");
            let v: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
            if v["message"] == "proxy listening" {
                break v["addr"].as_str().unwrap().parse().unwrap();
            }
        };
        let _ = std::fs::remove_file(&config);
        Spawned {
            child,
            addr,
            logs: rx,
        }
    }

    /// The next log line whose JSON satisfies `want`; every line read on the way is
    /// passed to `seen` too.
    fn wait_log(
        &self,
        want: impl Fn(&serde_json::Value) -> bool,
        mut seen: impl FnMut(&str),
    ) -> serde_json::Value {
        loop {
            let line = self
                .logs
                .recv_timeout(Duration::from_secs(30))
                .expect("the expected log line arrives");
            seen(&line);
            if let Ok(v) = serde_json::from_str(&line)
                && want(&v)
            {
                return v;
            }
        }
    }

    /// (current RSS, peak RSS) in bytes, from /proc.
    fn memory(&self) -> (u64, u64) {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        let field = |name: &str| {
            status
                .lines()
                .find(|l| l.starts_with(name))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
                .map(|kb| kb * 1024)
                .unwrap()
        };
        (field("VmRSS:"), field("VmHWM:"))
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn rand_suffix() -> u64 {
    use std::hash::{BuildHasher, RandomState};
    RandomState::new().hash_one(std::time::SystemTime::now())
}

/// The daemon never routes through a proxy named in its own environment (it would loop
/// or leak): requests go straight to the origin.
#[tokio::test]
async fn the_daemon_ignores_proxy_variables_in_its_environment() {
    let origin = Origin::start().await;
    let dead = "http://127.0.0.1:1";
    let daemon = Spawned::start(&[
        ("HTTP_PROXY", dead),
        ("http_proxy", dead),
        ("ALL_PROXY", dead),
        ("all_proxy", dead),
    ]);
    let r = send(daemon.addr, get(&origin.url("/echo"))).await;
    assert_eq!(r.status, 200, "{}", r.text());
}

const MIB: u64 = 1024 * 1024;

/// A 1 GiB download and a 256 MiB upload stream through with the daemon's resident memory
/// growing by less than 64 MiB: nothing is buffered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_bodies_stream_in_bounded_memory() {
    let origin = Origin::start().await;
    let daemon = Spawned::start(&[]);
    // Warm up: first connections, pool and allocator arenas.
    let warm = send(daemon.addr, get(&origin.url("/bytes/1048576"))).await;
    assert_eq!(warm.body.len() as u64, MIB);
    let (baseline, _) = daemon.memory();

    let mut conn = Conn::open(daemon.addr).await;
    let resp = conn
        .response(
            get(&origin.url(&format!("/bytes/{}", 1024 * MIB))),
            Full::new(Bytes::new()).boxed(),
        )
        .await;
    assert_eq!(resp.status(), 200);
    let mut body = resp.into_body();
    let mut downloaded = 0u64;
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame.expect("download frame").into_data() {
            downloaded += data.len() as u64;
        }
    }
    assert_eq!(downloaded, 1024 * MIB);

    let upload_size = 256 * MIB;
    let chunk = Bytes::from(vec![7u8; 64 * 1024]);
    let chunks = upload_size / chunk.len() as u64;
    let stream = futures_util::stream::iter(
        (0..chunks).map(move |_| Ok::<_, std::convert::Infallible>(Frame::data(chunk.clone()))),
    );
    let uploaded = conn
        .send_body(
            get(&origin.url("/upload"))
                .method("POST")
                .header("content-length", upload_size),
            StreamBody::new(stream).boxed(),
        )
        .await;
    assert_eq!(uploaded.status, 200, "{}", uploaded.text());
    assert_eq!(uploaded.json()["received"], upload_size);

    let (_, peak) = daemon.memory();
    let growth = peak.saturating_sub(baseline);
    assert!(
        growth < 64 * MIB,
        "RSS grew by {} MiB (baseline {} MiB, peak {} MiB)",
        growth / MIB,
        baseline / MIB,
        peak / MIB
    );
}

/// One access line per exchange, with session, method, URL (query values redacted),
/// status, bytes and duration; and no secret anywhere in the log, even at debug level.
#[tokio::test]
async fn access_log_has_one_line_per_exchange_and_no_secrets() {
    let origin = Origin::start().await;
    let port = origin.addr.port();
    let toml = format!(
        r#"
[upstream.resolve]
"api.test:{port}" = "{a}"
[sessions.logged]
secret = "session-secret-1"
[[sessions.logged.auth]]
scheme = "bearer"
token = "credential-secret-2"
hosts = ["api.test"]
"#,
        a = origin.addr
    );
    let daemon = Spawned::with_config(&toml, &[("RUST_LOG", "debug")]);
    let url = format!("http://api.test:{port}/cookies/set/c/cookie-secret-3?token=query-secret-4");
    let r = send(
        daemon.addr,
        get(&url).header(
            "proxy-authorization",
            proxy_auth("logged", "session-secret-1"),
        ),
    )
    .await;
    assert_eq!(r.status, 302);
    let r = send(
        daemon.addr,
        get(&format!("http://api.test:{port}/cookies")).header(
            "proxy-authorization",
            proxy_auth("logged", "session-secret-1"),
        ),
    )
    .await;
    assert_eq!(r.cookies()["c"], "cookie-secret-3");

    let mut all = String::new();
    let is_access = |v: &serde_json::Value| v["target"] == "sessiond::access";
    let first = daemon.wait_log(is_access, |l| all.push_str(l));
    let second = daemon.wait_log(is_access, |l| all.push_str(l));
    assert_eq!(first["session"], "logged");
    assert_eq!(first["method"], "GET");
    assert_eq!(
        first["url"],
        format!("http://api.test:{port}/cookies/set/c/cookie-secret-3?token=…")
    );
    assert_eq!(first["status"], 302);
    assert_eq!(first["outcome"], "complete");
    assert!(
        first["duration_ms"].as_f64().is_some_and(|ms| ms >= 0.0),
        "{first}"
    );
    assert_eq!(second["status"], 200);
    assert_eq!(second["bytes"], r.body.len());

    for secret in ["session-secret-1", "credential-secret-2", "query-secret-4"] {
        assert!(!all.contains(secret), "{secret} appears in the log:\n{all}");
    }
}

/// `kill -9` right after hundreds of acknowledged `Set-Cookie` responses loses none of
/// them: with full durability a response leaves only once its cookie is committed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_loses_no_acknowledged_cookie() {
    let origin = std::sync::Arc::new(Origin::start().await);
    let state = temp_path("kill9");
    let mut daemon = Spawned::with_state(&state, "", &[]);
    let addr = daemon.addr;
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..300 {
        let origin = std::sync::Arc::clone(&origin);
        tasks.spawn(async move {
            let r = send(
                addr,
                get(&origin.url("/x"))
                    .header("x-session", format!("k{}", i % 10))
                    .header("x-set-cookie", format!("c{i}=v{i}; Path=/")),
            )
            .await;
            assert_eq!(r.status, 200);
        });
    }
    while let Some(r) = tasks.join_next().await {
        r.unwrap();
    }
    // Every response above was acknowledged (30 cookies per session, under the per-domain
    // limit of 50); now the process dies without warning.
    daemon.child.kill().unwrap();
    daemon.child.wait().unwrap();

    let again = Spawned::with_state(&state, "", &[]);
    let mut found = 0;
    for s in 0..10 {
        let cookies = send(
            again.addr,
            get(&origin.url("/cookies")).header("x-session", format!("k{s}")),
        )
        .await
        .cookies();
        for (name, value) in &cookies {
            assert_eq!(value, &format!("v{}", &name[1..]));
        }
        found += cookies.len();
    }
    assert_eq!(found, 300, "cookies were lost across kill -9");
}

/// A store file that is not a database is moved aside; the daemon starts empty and serves.
#[tokio::test]
async fn a_corrupt_store_is_moved_aside() {
    let origin = Origin::start().await;
    let state = temp_path("corrupt");
    std::fs::create_dir_all(&state).unwrap();
    std::fs::write(
        state.join("sessions.db"),
        b"this is not a database, not even close",
    )
    .unwrap();
    let daemon = Spawned::with_state(&state, "", &[]);
    let r = send(daemon.addr, get(&origin.url("/cookies/set/after/1"))).await;
    assert_eq!(r.status, 302);
    let names: Vec<String> = std::fs::read_dir(&state)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        names.iter().any(|n| n.starts_with("sessions.db.corrupt-")),
        "{names:?}"
    );
}
