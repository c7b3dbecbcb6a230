//! Helpers shared by the test binaries that drive the real `sessiond` binary.
//!
//! Each test binary uses a subset of these, so unused ones are expected in any one of them.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

/// Long enough for a loaded CI machine; a healthy run takes milliseconds.
pub const DEADLINE: Duration = Duration::from_secs(30);

pub fn sessiond() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sessiond"));
    // The tests read `info` lines; a RUST_LOG in the caller's environment must not hide
    // them.
    cmd.env("RUST_LOG", "info").stdin(Stdio::null());
    cmd
}

/// A configuration file in the temp directory, removed when dropped.
pub struct TempConfig(pub PathBuf);

impl TempConfig {
    pub fn new(toml: &str) -> TempConfig {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let path = std::env::temp_dir().join(format!(
            "sessiond-cli-{}-{}.toml",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::write(&path, toml).expect("write a temp config");
        TempConfig(path)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempConfig {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Runs a command that is expected to exit on its own, within [`DEADLINE`]. A command
/// that keeps running (say, a daemon that started when it should have refused) is killed
/// and the test fails.
pub fn run_to_exit(cmd: &mut Command) -> Output {
    run_to_exit_with_stdin(cmd, None)
}

/// As [`run_to_exit`], writing `input` to the command's stdin (then closing it) when
/// given.
pub fn run_to_exit_with_stdin(cmd: &mut Command, input: Option<&'static [u8]>) -> Output {
    if input.is_some() {
        cmd.stdin(Stdio::piped());
    }
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start sessiond");
    let pid = child.id();
    let stdin = child.stdin.take();
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        if let (Some(mut stdin), Some(input)) = (stdin, input) {
            stdin.write_all(input).expect("write stdin");
        }
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(DEADLINE) {
        Ok(output) => output.expect("wait for sessiond"),
        Err(_) => {
            signal(pid, "KILL");
            panic!("sessiond was still running after {DEADLINE:?}; it should have exited");
        }
    }
}

/// The lines `from` produces, read on a thread of their own, as they come.
pub fn lines_of(from: impl Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, lines) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(from).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    lines
}

pub fn signal(pid: u32, name: &str) {
    let status = Command::new("kill")
        .arg(format!("-{name}"))
        .arg(pid.to_string())
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -{name} {pid} failed");
}

pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// A daemon started by a test; killed on drop unless it has already exited.
pub struct Daemon {
    child: Option<Child>,
    pub pid: u32,
    lines: mpsc::Receiver<String>,
}

impl Daemon {
    pub fn start(config: &TempConfig, args: &[&str]) -> Daemon {
        Daemon::start_with_env(config, args, &[])
    }

    /// As [`start`](Self::start), with more environment variables.
    pub fn start_with_env(config: &TempConfig, args: &[&str], env: &[(&str, &str)]) -> Daemon {
        let mut child = sessiond()
            .envs(env.iter().copied())
            .args(args)
            .arg("run")
            .arg("-c")
            .arg(config.path())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start sessiond");
        let pid = child.id();
        let lines = lines_of(child.stderr.take().expect("piped stderr"));
        Daemon {
            child: Some(child),
            pid,
            lines,
        }
    }

    /// The next log line that satisfies `want`, within [`DEADLINE`]; panics with every
    /// line seen otherwise.
    pub fn wait_for_line(&self, what: &str, want: impl Fn(&str) -> bool) -> String {
        let until = Instant::now() + DEADLINE;
        let mut seen = Vec::new();
        loop {
            let left = until.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if want(&line) => return line,
                Ok(line) => seen.push(line),
                Err(e) => panic!("no log line {what} ({e:?}); saw:\n{}", seen.join("\n")),
            }
        }
    }

    /// Waits for the process to exit, within [`DEADLINE`].
    pub fn wait(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("not waited for yet");
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            let _ = tx.send(child.wait());
        });
        match rx.recv_timeout(DEADLINE) {
            Ok(status) => status.expect("wait for sessiond"),
            Err(_) => {
                signal(self.pid, "KILL");
                panic!("sessiond did not exit within {DEADLINE:?}");
            }
        }
    }

    /// Every line logged after the ones already read, up to the end of the output.
    pub fn remaining_lines(&self) -> Vec<String> {
        let until = Instant::now() + DEADLINE;
        let mut lines = Vec::new();
        while let Ok(line) = self
            .lines
            .recv_timeout(until.saturating_duration_since(Instant::now()))
        {
            lines.push(line);
        }
        lines
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take()
            && let Ok(None) = child.try_wait()
        {
            let _ = Command::new("kill")
                .arg("-KILL")
                .arg(self.pid.to_string())
                .status();
            let _ = child.wait();
        }
    }
}

pub fn json(line: &str) -> serde_json::Value {
    serde_json::from_str(line).unwrap_or_else(|e| panic!("not a JSON log line ({e}): {line}"))
}

pub fn logged_addr(line: &serde_json::Value) -> SocketAddr {
    line["addr"]
        .as_str()
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("no addr in {line}"))
}

/// `GET path` of the server at `addr`; the whole response as text.
pub fn http_get(addr: SocketAddr, path: &str) -> String {
    http_request(addr, path, &addr.to_string(), "")
}

/// One `GET` to `addr` with `Connection: close`; the whole response as text. `target` is
/// the request target: a path for a server, an absolute URL for a proxy. `extra` is more
/// header lines, each ending in `\r\n`.
pub fn http_request(addr: SocketAddr, target: &str, host: &str, extra: &str) -> String {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(DEADLINE))
        .expect("set a read timeout");
    write!(
        stream,
        "GET {target} HTTP/1.1\r\nHost: {host}\r\n{extra}Connection: close\r\n\r\n"
    )
    .expect("send a request");
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .expect("read the response");
    response
}

/// A directory path in the temp dir, removed with its contents when dropped. The directory
/// itself is left for the code under test to create.
pub struct TempDirPath(pub PathBuf);

impl TempDirPath {
    pub fn new(name: &str) -> TempDirPath {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        TempDirPath(std::env::temp_dir().join(format!(
            "sessiond-cli-{name}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        )))
    }
}

impl Drop for TempDirPath {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Kills a process when dropped (a failed assertion must not leave it running).
pub struct KillOnDrop(pub u32);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .arg("-KILL")
            .arg(self.0.to_string())
            .status();
    }
}
