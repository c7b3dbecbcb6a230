//! Sessions that last: the store behind the registry (SPEC §6).

use std::os::unix::fs::PermissionsExt as _;

use crate::support::*;

/// Persistent and session cookies both survive a restart, in both durability modes.
#[tokio::test]
async fn a_restart_keeps_every_cookie() {
    for durability in ["full", "batched"] {
        let origin = Origin::start().await;
        let state = temp_path("restart");
        let toml = format!("[store]\ndurability = \"{durability}\"\n");
        let first = start_in(&toml, &state).await;
        let set = send(
            first.proxy_addr(),
            get(&origin.url("/x"))
                .header("x-session", "keeper")
                .header("x-set-cookie", "session_cookie=s; Path=/")
                .header("x-set-cookie", "persistent=p; Path=/; Max-Age=3600"),
        )
        .await;
        assert_eq!(set.status, 200);
        first.shutdown().await;

        let second = start_in(&toml, &state).await;
        let cookies = send(
            second.proxy_addr(),
            get(&origin.url("/cookies")).header("x-session", "keeper"),
        )
        .await
        .cookies();
        assert_eq!(
            cookies.get("session_cookie").map(String::as_str),
            Some("s"),
            "{durability}"
        );
        assert_eq!(
            cookies.get("persistent").map(String::as_str),
            Some("p"),
            "{durability}"
        );
    }
}

/// A deleted cookie stays deleted after a restart.
#[tokio::test]
async fn a_removed_cookie_stays_removed() {
    let origin = Origin::start().await;
    let state = temp_path("removed");
    let first = start_in("", &state).await;
    send(first.proxy_addr(), get(&origin.url("/cookies/set/gone/1"))).await;
    send(
        first.proxy_addr(),
        get(&origin.url("/x")).header("x-set-cookie", "gone=; Path=/; Max-Age=0"),
    )
    .await;
    first.shutdown().await;
    let second = start_in("", &state).await;
    let cookies = send(second.proxy_addr(), get(&origin.url("/cookies")))
        .await
        .cookies();
    assert!(!cookies.contains_key("gone"), "{cookies:?}");
}

#[tokio::test]
async fn state_files_are_private() {
    let origin = Origin::start().await;
    let state = temp_path("modes");
    let proxy = start_in("", &state).await;
    send(proxy.proxy_addr(), get(&origin.url("/cookies/set/a/1"))).await;
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&state), 0o700);
    assert_eq!(mode(&state.join("sessions.db")), 0o600);
    assert_eq!(mode(&state.join("sessions.db-wal")), 0o600);
}
