//! Hooks: a program or a webhook run when an exchange matches (`[[hooks]]`,
//! `[[sessions.NAME.hooks]]`). The exchange reaches it as JSON, on stdin or as the POST
//! body. A `retry` response hook refreshes the session (a re-login, typically through the
//! admin API) and the pipeline replays the request once; see `Proxy::exchange`.

use bytes::Bytes;
use http::{Method, Request, Uri, header};
use http_body_util::{BodyExt as _, Full};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt as _;

use std::sync::Arc;

use crate::config::{Hook, HookAction, HookEvent};
use crate::metrics::{Metrics, OutcomeLabels};
use crate::proxy::record::RedactedUri;

/// What a hook is told about the exchange. The URL's query values are redacted, and no
/// header is included: hooks get enough to act, never a secret.
pub fn exchange_json(
    event: HookEvent,
    session: &str,
    method: &Method,
    uri: &Uri,
    status: Option<u16>,
) -> Value {
    json!({
        "event": match event {
            HookEvent::Request => "request",
            HookEvent::Response => "response",
            HookEvent::Cookie => "cookie",
        },
        "session": session,
        "method": method.as_str(),
        "url": RedactedUri(uri).to_string(),
        "host": uri.host(),
        "status": status,
    })
}

/// Runs a hook to completion within its timeout. `Err` says why it did not succeed.
pub async fn run(
    hook: &Hook,
    session: &str,
    exchange: &Value,
    metrics: &Metrics,
) -> Result<(), String> {
    let body = exchange.to_string();
    let ran = match &hook.action {
        HookAction::Exec(argv) => {
            tokio::time::timeout(hook.timeout, exec(argv, session, body)).await
        }
        HookAction::Webhook(uri) => tokio::time::timeout(hook.timeout, webhook(uri, body)).await,
    };
    let result = ran.unwrap_or_else(|_| {
        Err(format!(
            "timed out after {}",
            humantime::format_duration(hook.timeout)
        ))
    });
    let outcome = if result.is_ok() { "ok" } else { "failed" };
    metrics
        .hook_runs
        .get_or_create(&OutcomeLabels { outcome })
        .inc();
    result
}

async fn exec(argv: &[String], session: &str, body: String) -> Result<(), String> {
    let args: Vec<String> = argv
        .iter()
        .map(|a| a.replace("{session}", session))
        .collect();
    let mut child = tokio::process::Command::new(&args[0])
        .args(&args[1..])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        // The service manager's channels are the daemon's, not its hooks'.
        .env_remove("NOTIFY_SOCKET")
        .env_remove("WATCHDOG_USEC")
        .env_remove("WATCHDOG_PID")
        // A hook that outlives its timeout is killed with the future that ran it.
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot run {}: {e}", args[0]))?;
    if let Some(mut stdin) = child.stdin.take() {
        // A hook that does not read its input is fine.
        let _ = stdin.write_all(body.as_bytes()).await;
    }
    let status = child.wait().await.map_err(|e| e.to_string())?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{} exited with {status}", args[0]))
    }
}

async fn webhook(uri: &Uri, body: String) -> Result<(), String> {
    let host = uri.host().unwrap_or_default();
    let port = uri.port_u16().unwrap_or(80);
    let stream = tokio::net::TcpStream::connect((crate::hosts::unbracket(host), port))
        .await
        .map_err(|e| format!("cannot reach the webhook: {e}"))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    let authority = uri.authority().map(|a| a.as_str()).unwrap_or(host);
    let req = Request::post(uri.path_and_query().map(|p| p.as_str()).unwrap_or("/"))
        .header(header::HOST, authority)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| e.to_string())?;
    let resp = sender.send_request(req).await.map_err(|e| e.to_string())?;
    let status = resp.status();
    // Drain the answer so the connection ends cleanly.
    let _ = resp.into_body().collect().await;
    if status.is_success() {
        Ok(())
    } else {
        Err(format!("the webhook answered {status}"))
    }
}

/// Fires hooks that nobody waits for (notifications), each in its own task.
pub fn notify(
    hooks: &[Hook],
    event: HookEvent,
    status: u16,
    host: &str,
    session: &str,
    exchange: Value,
    metrics: &Arc<Metrics>,
) {
    for hook in hooks
        .iter()
        .filter(|h| !h.retry && h.matches(event, status, host))
    {
        let hook = hook.clone();
        let session = session.to_string();
        let exchange = exchange.clone();
        let metrics = Arc::clone(metrics);
        tokio::spawn(async move {
            if let Err(e) = run(&hook, &session, &exchange, &metrics).await {
                tracing::warn!(session, error = %e, "hook failed");
            }
        });
    }
}
