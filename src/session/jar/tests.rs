//! Unit tests for the jar's RFC 6265bis rules on top of `cookie_store`.

use http::HeaderValue;
use url::Url;

use super::*;

fn url(s: &str) -> Url {
    Url::parse(s).unwrap()
}

fn jar() -> Jar {
    Jar::new(CookieLimits::default())
}

fn jar_with(max_per_domain: usize, max_per_session: usize, max_bytes: usize) -> Jar {
    Jar::new(CookieLimits {
        max_per_domain,
        max_per_session,
        max_bytes,
    })
}

/// Records `header` as a `Set-Cookie` received from `from`.
fn set(jar: &mut Jar, from: &str, header: &str) -> SetOutcome {
    jar.set_cookie(header.as_bytes(), &url(from))
}

/// The `Cookie` header the jar alone would send to `to`, as text.
fn sent(jar: &mut Jar, to: &str) -> Option<String> {
    jar.cookie_header(&url(to), None)
        .map(|v| v.to_str().unwrap().to_string())
}

fn sent_with(jar: &mut Jar, to: &str, client: &str) -> Option<String> {
    let client = HeaderValue::from_str(client).unwrap();
    jar.cookie_header(&url(to), Some(&client))
        .map(|v| v.to_str().unwrap().to_string())
}

fn is_ignored(outcome: SetOutcome) -> bool {
    matches!(outcome, SetOutcome::Ignored(_))
}

// ---- storing and sending ----

#[test]
fn stores_and_sends_a_cookie() {
    let mut j = jar();
    assert!(j.is_empty());
    assert_eq!(
        set(&mut j, "http://example.com/", "sid=1234"),
        SetOutcome::Stored
    );
    assert_eq!(j.len(), 1);
    assert_eq!(
        sent(&mut j, "http://example.com/anything").as_deref(),
        Some("sid=1234")
    );
}

#[test]
fn updating_a_cookie_replaces_its_value() {
    let mut j = jar();
    set(&mut j, "http://example.com/", "sid=old");
    assert_eq!(
        set(&mut j, "http://example.com/", "sid=new"),
        SetOutcome::Updated
    );
    assert_eq!(j.len(), 1);
    assert_eq!(
        sent(&mut j, "http://example.com/").as_deref(),
        Some("sid=new")
    );
}

#[test]
fn outcome_changed_is_false_only_for_ignored() {
    assert!(SetOutcome::Stored.changed());
    assert!(SetOutcome::Updated.changed());
    assert!(SetOutcome::Removed.changed());
    assert!(!SetOutcome::Ignored("x").changed());
}

#[test]
fn garbage_set_cookie_is_ignored() {
    let mut j = jar();
    assert!(is_ignored(
        j.set_cookie(b"\xff\xfe=1", &url("http://example.com/"))
    ));
    for bad in ["", "no-equals-sign", "=value-without-name"] {
        assert!(
            is_ignored(set(&mut j, "http://example.com/", bad)),
            "{bad:?}"
        );
    }
    assert!(j.is_empty());
}

// ---- domain ----

#[test]
fn host_only_cookie_stays_on_its_host() {
    let mut j = jar();
    set(&mut j, "http://a.example.com/", "h=1");
    assert_eq!(
        sent(&mut j, "http://a.example.com/").as_deref(),
        Some("h=1")
    );
    assert_eq!(sent(&mut j, "http://b.example.com/"), None);
    assert_eq!(sent(&mut j, "http://example.com/"), None);
    assert_eq!(sent(&mut j, "http://x.a.example.com/"), None);
}

#[test]
fn domain_cookie_goes_to_sibling_subdomains() {
    let mut j = jar();
    assert_eq!(
        set(&mut j, "http://a.example.com/", "d=1; Domain=example.com"),
        SetOutcome::Stored
    );
    assert_eq!(
        sent(&mut j, "http://b.example.com/").as_deref(),
        Some("d=1")
    );
    assert_eq!(sent(&mut j, "http://example.com/").as_deref(), Some("d=1"));
    assert_eq!(sent(&mut j, "http://notexample.com/"), None);
}

#[test]
fn domain_of_another_site_is_refused() {
    let mut j = jar();
    assert!(is_ignored(set(
        &mut j,
        "http://example.com/",
        "x=1; Domain=other.com"
    )));
    assert!(is_ignored(set(
        &mut j,
        "http://example.com/",
        "x=1; Domain=a.example.com"
    )));
    assert!(j.is_empty());
}

// ---- path ----

#[test]
fn path_matches_on_a_slash_boundary() {
    let mut j = jar();
    set(&mut j, "http://example.com/", "p=1; Path=/api");
    assert_eq!(
        sent(&mut j, "http://example.com/api").as_deref(),
        Some("p=1")
    );
    assert_eq!(
        sent(&mut j, "http://example.com/api/x").as_deref(),
        Some("p=1")
    );
    assert_eq!(sent(&mut j, "http://example.com/apix"), None);
    assert_eq!(sent(&mut j, "http://example.com/"), None);
}

// ---- Secure ----

#[test]
fn secure_cookie_over_http_is_refused() {
    let mut j = jar();
    assert!(is_ignored(set(
        &mut j,
        "http://example.com/",
        "s=1; Secure"
    )));
    assert!(j.is_empty());
}

#[test]
fn secure_cookie_from_https_is_sent_only_to_https() {
    let mut j = jar();
    assert_eq!(
        set(&mut j, "https://example.com/", "s=1; Secure"),
        SetOutcome::Stored
    );
    assert_eq!(sent(&mut j, "https://example.com/").as_deref(), Some("s=1"));
    assert_eq!(sent(&mut j, "http://example.com/"), None);
}

#[test]
fn secure_prefix_needs_secure_from_https() {
    let mut j = jar();
    assert!(is_ignored(set(
        &mut j,
        "https://example.com/",
        "__Secure-a=1"
    )));
    assert!(is_ignored(set(
        &mut j,
        "http://example.com/",
        "__Secure-a=1; Secure"
    )));
    assert_eq!(
        set(
            &mut j,
            "https://example.com/",
            "__Secure-a=1; Secure; Domain=example.com"
        ),
        SetOutcome::Stored
    );
}

#[test]
fn secure_prefix_is_case_insensitive() {
    let mut j = jar();
    assert!(is_ignored(set(
        &mut j,
        "https://example.com/",
        "__SECURE-a=1"
    )));
    assert!(is_ignored(set(
        &mut j,
        "https://example.com/",
        "__secure-a=1"
    )));
    assert!(j.is_empty());
}

#[test]
fn host_prefix_accepted_with_secure_root_path_and_no_domain() {
    let mut j = jar();
    assert_eq!(
        set(
            &mut j,
            "https://example.com/x",
            "__Host-id=1; Secure; Path=/"
        ),
        SetOutcome::Stored
    );
    assert_eq!(
        sent(&mut j, "https://example.com/").as_deref(),
        Some("__Host-id=1")
    );
}

#[test]
fn host_prefix_refused_without_its_conditions() {
    let mut j = jar();
    for header in [
        "__Host-id=1; Secure; Path=/; Domain=example.com",
        "__Host-id=1; Secure; Path=/api",
        "__Host-id=1; Secure",
        "__Host-id=1; Path=/",
        "__HOST-id=1; Path=/",
        "__host-id=1; Secure; Path=/; Domain=example.com",
    ] {
        assert!(
            is_ignored(set(&mut j, "https://example.com/", header)),
            "{header}"
        );
    }
    assert!(is_ignored(set(
        &mut j,
        "http://example.com/",
        "__Host-id=1; Secure; Path=/"
    )));
    assert!(j.is_empty());
}

#[test]
fn plain_http_cannot_overwrite_a_secure_cookie() {
    let mut j = jar();
    set(&mut j, "https://example.com/", "sid=good; Secure");
    assert!(is_ignored(set(&mut j, "http://example.com/", "sid=evil")));
    assert!(is_ignored(set(
        &mut j,
        "http://example.com/",
        "sid=evil; Path=/deeper"
    )));
    assert!(is_ignored(set(
        &mut j,
        "http://sub.example.com/",
        "sid=evil; Domain=example.com"
    )));
    assert_eq!(
        sent(&mut j, "https://example.com/deeper").as_deref(),
        Some("sid=good")
    );
    // Another name is fine.
    assert_eq!(
        set(&mut j, "http://example.com/", "other=1"),
        SetOutcome::Stored
    );
}

#[test]
fn https_may_replace_a_secure_cookie() {
    let mut j = jar();
    set(&mut j, "https://example.com/", "sid=old; Secure");
    assert_eq!(
        set(&mut j, "https://example.com/", "sid=new"),
        SetOutcome::Updated
    );
    assert_eq!(
        sent(&mut j, "http://example.com/").as_deref(),
        Some("sid=new")
    );
}

// ---- public suffixes ----

#[test]
fn domain_that_is_a_public_suffix_is_refused() {
    let mut j = jar();
    assert!(is_ignored(set(
        &mut j,
        "http://example.com/",
        "x=1; Domain=com"
    )));
    assert!(is_ignored(set(
        &mut j,
        "http://example.com/",
        "x=1; Domain=.com"
    )));
    assert!(is_ignored(set(
        &mut j,
        "http://example.co.uk/",
        "x=1; Domain=co.uk"
    )));
    assert!(is_ignored(set(
        &mut j,
        "http://example.co.uk/",
        "x=1; Domain=CO.UK"
    )));
    assert!(j.is_empty());
}

#[test]
fn registrable_domain_is_accepted() {
    let mut j = jar();
    assert_eq!(
        set(
            &mut j,
            "http://www.example.co.uk/",
            "x=1; Domain=example.co.uk"
        ),
        SetOutcome::Stored
    );
    assert_eq!(
        sent(&mut j, "http://shop.example.co.uk/").as_deref(),
        Some("x=1")
    );
}

#[test]
fn public_suffix_host_setting_its_own_domain_gets_a_host_only_cookie() {
    let mut j = jar();
    assert_eq!(
        set(&mut j, "http://co.uk/", "x=1; Domain=co.uk"),
        SetOutcome::Stored
    );
    assert_eq!(sent(&mut j, "http://co.uk/").as_deref(), Some("x=1"));
    assert_eq!(sent(&mut j, "http://example.co.uk/"), None);
}

// ---- expiry ----

#[test]
fn max_age_zero_removes_a_stored_cookie() {
    let mut j = jar();
    set(&mut j, "http://example.com/", "sid=1");
    set(&mut j, "http://example.com/", "keep=1");
    assert_eq!(
        set(&mut j, "http://example.com/", "sid=; Max-Age=0"),
        SetOutcome::Removed
    );
    assert_eq!(j.len(), 1);
    assert_eq!(
        sent(&mut j, "http://example.com/").as_deref(),
        Some("keep=1")
    );
}

#[test]
fn past_expires_removes_a_stored_cookie() {
    let mut j = jar();
    set(&mut j, "http://example.com/", "sid=1");
    assert_eq!(
        set(
            &mut j,
            "http://example.com/",
            "sid=gone; Expires=Thu, 01 Jan 1970 00:00:00 GMT"
        ),
        SetOutcome::Removed
    );
    assert!(j.is_empty());
    assert_eq!(sent(&mut j, "http://example.com/"), None);
}

#[test]
fn expired_cookie_with_nothing_to_delete_is_ignored() {
    let mut j = jar();
    assert!(is_ignored(set(
        &mut j,
        "http://example.com/",
        "sid=1; Max-Age=0"
    )));
    assert!(j.is_empty());
}

#[test]
fn removal_must_match_domain_and_path() {
    let mut j = jar();
    set(&mut j, "http://example.com/", "sid=1; Path=/api");
    assert!(is_ignored(set(
        &mut j,
        "http://example.com/",
        "sid=; Max-Age=0; Path=/"
    )));
    assert_eq!(
        sent(&mut j, "http://example.com/api").as_deref(),
        Some("sid=1")
    );
}

#[test]
fn future_max_age_is_stored() {
    let mut j = jar();
    assert_eq!(
        set(&mut j, "http://example.com/", "sid=1; Max-Age=3600"),
        SetOutcome::Stored
    );
    assert_eq!(
        sent(&mut j, "http://example.com/").as_deref(),
        Some("sid=1")
    );
}

// ---- size and count limits ----

#[test]
fn name_and_value_over_max_bytes_are_refused() {
    let mut j = jar_with(50, 3000, 10);
    assert!(is_ignored(set(
        &mut j,
        "http://example.com/",
        "abcde=123456"
    )));
    assert_eq!(
        set(&mut j, "http://example.com/", "abcde=12345"),
        SetOutcome::Stored
    );
    assert_eq!(j.len(), 1);
}

#[test]
fn default_size_limit_is_4096() {
    let mut j = jar();
    let at_limit = format!("n={}", "v".repeat(4095));
    let over = format!("m={}", "v".repeat(4096));
    assert_eq!(
        set(&mut j, "http://example.com/", &at_limit),
        SetOutcome::Stored
    );
    assert!(is_ignored(set(&mut j, "http://example.com/", &over)));
}

#[test]
fn per_domain_limit_evicts_the_oldest_of_that_domain() {
    let mut j = jar_with(3, 3000, 4096);
    set(&mut j, "http://other.test/", "o=1");
    for i in 0..4 {
        assert_eq!(
            set(&mut j, "http://example.com/", &format!("c{i}=1")),
            SetOutcome::Stored
        );
    }
    assert_eq!(
        sent(&mut j, "http://example.com/").as_deref(),
        Some("c1=1; c2=1; c3=1")
    );
    assert_eq!(sent(&mut j, "http://other.test/").as_deref(), Some("o=1"));
    assert_eq!(j.len(), 4);
}

#[test]
fn per_session_limit_evicts_the_oldest_overall() {
    let mut j = jar_with(50, 3, 4096);
    for host in ["a.test", "b.test", "c.test", "d.test"] {
        set(&mut j, &format!("http://{host}/"), "c=1");
    }
    assert_eq!(j.len(), 3);
    assert_eq!(sent(&mut j, "http://a.test/"), None);
    for host in ["b.test", "c.test", "d.test"] {
        assert_eq!(
            sent(&mut j, &format!("http://{host}/")).as_deref(),
            Some("c=1"),
            "{host}"
        );
    }
}

#[test]
fn updated_cookie_keeps_its_creation_time_so_is_evicted_first() {
    let mut j = jar_with(2, 3000, 4096);
    set(&mut j, "http://example.com/", "a=1");
    set(&mut j, "http://example.com/", "b=1");
    assert_eq!(
        set(&mut j, "http://example.com/", "a=2"),
        SetOutcome::Updated
    );
    set(&mut j, "http://example.com/", "c=1");
    assert_eq!(
        sent(&mut j, "http://example.com/").as_deref(),
        Some("b=1; c=1")
    );
}

#[test]
fn removed_cookie_frees_its_place() {
    let mut j = jar_with(2, 3000, 4096);
    set(&mut j, "http://example.com/", "a=1");
    set(&mut j, "http://example.com/", "b=1");
    set(&mut j, "http://example.com/", "a=; Max-Age=0");
    set(&mut j, "http://example.com/", "c=1");
    assert_eq!(
        sent(&mut j, "http://example.com/").as_deref(),
        Some("b=1; c=1")
    );
}

// ---- the Cookie header ----

#[test]
fn longer_paths_are_sent_first() {
    let mut j = jar();
    set(&mut j, "http://example.com/", "root=1; Path=/");
    set(&mut j, "http://example.com/", "deep=1; Path=/a/b");
    set(&mut j, "http://example.com/", "mid=1; Path=/a");
    assert_eq!(
        sent(&mut j, "http://example.com/a/b/c").as_deref(),
        Some("deep=1; mid=1; root=1")
    );
}

#[test]
fn equal_paths_are_sent_oldest_first() {
    let mut j = jar();
    for name in ["zeta", "alpha", "mu"] {
        set(&mut j, "http://example.com/", &format!("{name}=1"));
    }
    set(&mut j, "http://example.com/", "zeta=2");
    assert_eq!(
        sent(&mut j, "http://example.com/").as_deref(),
        Some("zeta=2; alpha=1; mu=1")
    );
}

#[test]
fn client_cookie_wins_a_name_clash_and_comes_first() {
    let mut j = jar();
    set(&mut j, "http://example.com/", "a=jar");
    set(&mut j, "http://example.com/", "b=jar");
    assert_eq!(
        sent_with(&mut j, "http://example.com/", "z=mine; a=mine").as_deref(),
        Some("z=mine; a=mine; b=jar")
    );
}

#[test]
fn client_header_is_unchanged_when_the_jar_has_nothing() {
    let mut j = jar();
    set(&mut j, "http://other.test/", "x=1");
    let client = HeaderValue::from_static("a=1;b=2");
    let out = j.cookie_header(&url("http://example.com/"), Some(&client));
    assert_eq!(out, Some(client.clone()));
    assert_eq!(
        jar().cookie_header(&url("http://example.com/"), Some(&client)),
        Some(client)
    );
}

#[test]
fn nothing_to_send_gives_none() {
    let mut j = jar();
    assert_eq!(sent(&mut j, "http://example.com/"), None);
    set(&mut j, "http://other.test/", "x=1");
    assert_eq!(sent(&mut j, "http://example.com/"), None);
}

#[test]
fn cookie_header_is_sensitive() {
    let mut j = jar();
    set(&mut j, "http://example.com/", "sid=1");
    let value = j.cookie_header(&url("http://example.com/"), None).unwrap();
    assert!(value.is_sensitive());
    let client = HeaderValue::from_static("c=1");
    let merged = j
        .cookie_header(&url("http://example.com/"), Some(&client))
        .unwrap();
    assert!(merged.is_sensitive());
}

#[test]
fn debug_never_shows_cookie_values() {
    let mut j = jar();
    set(&mut j, "http://example.com/", "sid=hunter2");
    let debug = format!("{j:?}");
    assert!(!debug.contains("hunter2"), "{debug}");
    assert!(!debug.contains("sid"), "{debug}");
    assert!(debug.contains('1'), "the count is shown: {debug}");
}

#[test]
fn utf8_cookie_value_is_sent_back() {
    let mut j = jar();
    set(&mut j, "http://example.com/", "plain=1");
    assert_eq!(
        set(&mut j, "http://example.com/", "name=café"),
        SetOutcome::Stored
    );
    let value = j.cookie_header(&url("http://example.com/"), None).unwrap();
    assert_eq!(value.as_bytes(), "plain=1; name=café".as_bytes());
}

#[test]
fn client_cookie_with_non_ascii_bytes_is_kept() {
    let mut j = jar();
    set(&mut j, "http://example.com/", "jar=1");
    let client = HeaderValue::from_bytes("mine=café".as_bytes()).unwrap();
    let value = j
        .cookie_header(&url("http://example.com/"), Some(&client))
        .unwrap();
    assert_eq!(value.as_bytes(), "mine=café; jar=1".as_bytes());
}

#[test]
fn client_cookie_that_is_not_utf8_is_kept_byte_for_byte() {
    let mut j = jar();
    set(&mut j, "http://example.com/", "jar=1");
    let client = HeaderValue::from_bytes(b"mine=caf\xe9").unwrap();
    let value = j
        .cookie_header(&url("http://example.com/"), Some(&client))
        .unwrap();
    assert_eq!(value.as_bytes(), b"mine=caf\xe9; jar=1");
}

// ---- change tracking, for the durable store ----

/// 2070-01-01T00:00:00Z, and `Expires` dates a few seconds after it: explicit dates make
/// the expiry tolerance testable without a clock.
const Y2070: i64 = 3_155_760_000;

fn expires_at(seconds_after_2070: u32) -> String {
    let (m, s) = (seconds_after_2070 / 60, seconds_after_2070 % 60);
    format!("Expires=Wed, 01 Jan 2070 00:{m:02}:{s:02} GMT")
}

/// The cookie a change puts, or a panic naming what it was instead.
fn put(change: &CookieChange) -> &StoredCookie {
    match change {
        CookieChange::Put(c) => c,
        other => panic!("expected a Put, got {other:?}"),
    }
}

fn delete(domain: &str, path: &str, name: &str) -> CookieChange {
    CookieChange::Delete {
        domain: domain.to_string(),
        path: path.to_string(),
        name: name.to_string(),
    }
}

#[test]
fn new_cookie_gives_one_put_with_every_attribute() {
    let mut j = jar();
    let header = format!(
        "sid=abc; Domain=example.com; Path=/app; Secure; HttpOnly; SameSite=Lax; {}",
        expires_at(0)
    );
    assert_eq!(
        set(&mut j, "https://www.example.com/login", &header),
        SetOutcome::Stored
    );
    let changes = j.take_changes();
    assert_eq!(changes.len(), 1);
    let c = put(&changes[0]);
    assert_eq!(
        c,
        &StoredCookie {
            domain: "example.com".to_string(),
            host_only: false,
            path: "/app".to_string(),
            name: "sid".to_string(),
            value: "abc".to_string(),
            secure: true,
            http_only: true,
            same_site: Some("Lax".to_string()),
            expires: Some(Y2070),
            created: 0,
        }
    );
    assert_eq!(c.value, "abc", "Debug hides it; compare it explicitly");

    assert_eq!(
        set(&mut j, "http://a.example.com/x/login", "h=1"),
        SetOutcome::Stored
    );
    let changes = j.take_changes();
    assert_eq!(changes.len(), 1);
    assert_eq!(
        put(&changes[0]),
        &StoredCookie {
            domain: "a.example.com".to_string(),
            host_only: true,
            path: "/x".to_string(),
            name: "h".to_string(),
            value: "1".to_string(),
            secure: false,
            http_only: false,
            same_site: None,
            expires: None,
            created: 1,
        }
    );
}

#[test]
fn identical_set_cookie_is_unchanged_and_records_nothing() {
    let mut j = jar();
    let persistent = format!("p=1; Path=/; HttpOnly; SameSite=Strict; {}", expires_at(0));
    for header in ["session=1", "aged=1; Max-Age=3600", persistent.as_str()] {
        assert_eq!(
            set(&mut j, "https://example.com/", header),
            SetOutcome::Stored
        );
        assert_eq!(j.take_changes().len(), 1, "{header}");
        assert_eq!(
            set(&mut j, "https://example.com/", header),
            SetOutcome::Unchanged,
            "{header}"
        );
        assert!(!SetOutcome::Unchanged.changed());
        assert_eq!(j.take_changes(), [], "{header}");
    }
}

#[test]
fn expiry_moved_within_the_tolerance_is_unchanged() {
    assert_eq!(
        EXPIRY_TOLERANCE, 60,
        "the dates below are chosen around 60s"
    );
    let mut j = jar();
    let at = |s| format!("sid=1; {}", expires_at(s));
    set(&mut j, "http://example.com/", &at(0));
    j.take_changes();
    assert_eq!(
        set(&mut j, "http://example.com/", &at(30)),
        SetOutcome::Unchanged
    );
    assert_eq!(
        set(&mut j, "http://example.com/", &at(60)),
        SetOutcome::Unchanged
    );
    assert_eq!(j.take_changes(), []);
    assert_eq!(
        set(&mut j, "http://example.com/", &at(61)),
        SetOutcome::Updated
    );
    let changes = j.take_changes();
    assert_eq!(changes.len(), 1);
    assert_eq!(put(&changes[0]).expires, Some(Y2070 + 61));
    // Earlier is a move too.
    assert_eq!(
        set(&mut j, "http://example.com/", &at(0)),
        SetOutcome::Updated
    );
    assert_eq!(put(&j.take_changes()[0]).expires, Some(Y2070));
}

#[test]
fn small_expiry_moves_add_up_against_what_was_persisted() {
    let mut j = jar();
    let at = |s| format!("sid=1; {}", expires_at(s));
    set(&mut j, "http://example.com/", &at(0));
    j.take_changes();
    assert_eq!(
        set(&mut j, "http://example.com/", &at(40)),
        SetOutcome::Unchanged
    );
    // 40s after the last one seen, but 80s after the one the store holds.
    assert_eq!(
        set(&mut j, "http://example.com/", &at(80)),
        SetOutcome::Updated
    );
    assert_eq!(put(&j.take_changes()[0]).expires, Some(Y2070 + 80));
}

#[test]
fn max_age_refresh_is_unchanged_but_a_longer_one_is_a_put() {
    let mut j = jar();
    set(&mut j, "http://example.com/", "sid=1; Max-Age=3600");
    j.take_changes();
    assert_eq!(
        set(&mut j, "http://example.com/", "sid=1; Max-Age=3600"),
        SetOutcome::Unchanged
    );
    assert_eq!(
        set(&mut j, "http://example.com/", "sid=1; Max-Age=3630"),
        SetOutcome::Unchanged
    );
    assert_eq!(j.take_changes(), []);
    assert_eq!(
        set(&mut j, "http://example.com/", "sid=1; Max-Age=7200"),
        SetOutcome::Updated
    );
    let changes = j.take_changes();
    assert_eq!(changes.len(), 1);
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let expires = put(&changes[0]).expires.unwrap();
    assert!((expires - (now + 7200)).abs() <= 5, "{expires} vs {now}");
}

#[test]
fn session_and_persistent_are_different_expiries() {
    let mut j = jar();
    set(&mut j, "http://example.com/", "sid=1");
    j.take_changes();
    assert_eq!(
        set(&mut j, "http://example.com/", "sid=1; Max-Age=3600"),
        SetOutcome::Updated
    );
    assert!(put(&j.take_changes()[0]).expires.is_some());
    assert_eq!(
        set(&mut j, "http://example.com/", "sid=1"),
        SetOutcome::Updated
    );
    assert_eq!(put(&j.take_changes()[0]).expires, None);
}

#[test]
fn changed_value_or_attribute_is_a_put_keeping_creation_order() {
    let mut j = jar();
    set(&mut j, "https://example.com/", "first=1");
    set(&mut j, "https://example.com/", "sid=old");
    j.take_changes();
    for (header, check) in [
        (
            "sid=new",
            (|c: &StoredCookie| c.value == "new") as fn(&StoredCookie) -> bool,
        ),
        ("sid=new; HttpOnly", |c| c.http_only),
        ("sid=new; HttpOnly; Secure", |c| c.secure && c.http_only),
        ("sid=new; HttpOnly; Secure; SameSite=Strict", |c| {
            c.same_site.as_deref() == Some("Strict")
        }),
        ("sid=new", |c| {
            !c.secure && !c.http_only && c.same_site.is_none()
        }),
    ] {
        assert_eq!(
            set(&mut j, "https://example.com/", header),
            SetOutcome::Updated,
            "{header}"
        );
        let changes = j.take_changes();
        assert_eq!(changes.len(), 1, "{header}");
        let c = put(&changes[0]);
        assert!(check(c), "{header}");
        assert_eq!((c.name.as_str(), c.created), ("sid", 1), "{header}");
    }
}

#[test]
fn max_age_zero_gives_a_delete() {
    let mut j = jar();
    set(
        &mut j,
        "http://www.example.com/",
        "sid=1; Domain=example.com; Path=/app",
    );
    set(&mut j, "http://www.example.com/", "h=1");
    j.take_changes();
    assert_eq!(
        set(
            &mut j,
            "http://www.example.com/",
            "sid=; Domain=example.com; Path=/app; Max-Age=0"
        ),
        SetOutcome::Removed
    );
    assert_eq!(j.take_changes(), [delete("example.com", "/app", "sid")]);
    assert_eq!(
        set(
            &mut j,
            "http://www.example.com/",
            "h=; Expires=Thu, 01 Jan 1970 00:00:00 GMT"
        ),
        SetOutcome::Removed
    );
    assert_eq!(j.take_changes(), [delete("www.example.com", "/", "h")]);
    assert!(j.is_empty());
}

#[test]
fn ignored_cookie_records_nothing() {
    let mut j = jar();
    set(&mut j, "http://example.com/", "sid=; Max-Age=0");
    set(&mut j, "http://example.com/", "s=1; Secure");
    set(&mut j, "http://example.com/", "x=1; Domain=other.com");
    assert_eq!(j.take_changes(), []);
}

#[test]
fn eviction_over_the_domain_limit_gives_a_delete() {
    let mut j = jar_with(2, 3000, 4096);
    set(&mut j, "http://example.com/", "a=1");
    set(&mut j, "http://example.com/", "b=1");
    j.take_changes();
    assert_eq!(
        set(&mut j, "http://example.com/", "c=1"),
        SetOutcome::Stored
    );
    let changes = j.take_changes();
    assert_eq!(changes.len(), 2);
    assert_eq!(put(&changes[0]).name, "c");
    assert_eq!(changes[1], delete("example.com", "/", "a"));
}

#[test]
fn eviction_over_the_session_limit_gives_a_delete() {
    let mut j = jar_with(50, 2, 4096);
    set(&mut j, "http://a.test/", "c=1");
    set(&mut j, "http://b.test/", "c=1");
    j.take_changes();
    set(&mut j, "http://c.test/", "c=1");
    let changes = j.take_changes();
    assert_eq!(changes.len(), 2);
    assert_eq!(put(&changes[0]).domain, "c.test");
    assert_eq!(changes[1], delete("a.test", "/", "c"));
}

#[test]
fn take_changes_empties_the_buffer() {
    let mut j = jar();
    set(&mut j, "http://example.com/", "a=1");
    set(&mut j, "http://example.com/", "b=1");
    set(&mut j, "http://example.com/", "a=; Max-Age=0");
    let changes = j.take_changes();
    assert_eq!(changes.len(), 3);
    assert_eq!(put(&changes[0]).name, "a");
    assert_eq!(put(&changes[1]).name, "b");
    assert_eq!(changes[2], delete("example.com", "/", "a"));
    assert_eq!(j.take_changes(), []);
}

// ---- restoring from the store ----

/// A jar with every kind of cookie, one of them updated after later ones were created.
fn populated() -> Jar {
    let mut j = jar();
    for (from, header) in [
        (
            "https://www.example.com/",
            "sid=abc; Domain=example.com; Secure; HttpOnly; SameSite=Strict; Max-Age=3600",
        ),
        ("http://www.example.com/", "theme=dark"),
        (
            "http://www.example.com/",
            "deep=1; Path=/a/b; Expires=Wed, 01 Jan 2070 00:00:00 GMT",
        ),
        ("http://api.example.com/", "tok=1; SameSite=None"),
        ("http://www.example.com/", "zeta=1"),
        ("http://www.example.com/", "theme=light"),
    ] {
        assert!(set(&mut j, from, header).changed(), "{header}");
    }
    j
}

const PROBES: [&str; 7] = [
    "https://www.example.com/a/b/c",
    "http://www.example.com/",
    "https://example.com/",
    "http://api.example.com/",
    "https://deep.www.example.com/a/b",
    "http://other.example.com/",
    "http://example.org/",
];

#[test]
fn restore_of_export_round_trips() {
    let mut original = populated();
    let mut restored = Jar::restore(CookieLimits::default(), original.export());
    assert_eq!(restored.export(), original.export());
    let values = |j: &Jar| -> Vec<String> { j.export().iter().map(|c| c.value.clone()).collect() };
    assert_eq!(values(&restored), values(&original));
    for to in PROBES {
        assert_eq!(sent(&mut restored, to), sent(&mut original, to), "{to}");
    }
    assert_eq!(
        sent(&mut restored, "https://www.example.com/a/b/c").as_deref(),
        Some("deep=1; sid=abc; theme=light; zeta=1")
    );
    assert_eq!(restored.take_changes(), []);
}

#[test]
fn restored_cookies_resent_unchanged_record_nothing() {
    let mut restored = Jar::restore(CookieLimits::default(), populated().export());
    for (from, header) in [
        ("http://www.example.com/", "theme=light"),
        (
            "http://www.example.com/",
            "deep=1; Path=/a/b; Expires=Wed, 01 Jan 2070 00:00:30 GMT",
        ),
        (
            "https://www.example.com/",
            "sid=abc; Domain=example.com; Secure; HttpOnly; SameSite=Strict; Max-Age=3600",
        ),
    ] {
        assert_eq!(
            set(&mut restored, from, header),
            SetOutcome::Unchanged,
            "{header}"
        );
    }
    assert_eq!(restored.take_changes(), []);
}

#[test]
fn restore_keeps_creation_order_and_continues_after_it() {
    let mut all = populated().export();
    // The store may hand rows back in any order.
    all.reverse();
    let mut restored = Jar::restore(CookieLimits::default(), all);
    let created: Vec<u64> = restored.export().iter().map(|c| c.created).collect();
    assert!(created.is_sorted(), "{created:?}");
    set(&mut restored, "http://www.example.com/", "newest=1");
    let changes = restored.take_changes();
    let newest = put(&changes[0]);
    assert!(
        newest.created > *created.last().unwrap(),
        "{}",
        newest.created
    );
    assert_eq!(
        sent(&mut restored, "http://www.example.com/").as_deref(),
        Some("theme=light; zeta=1; newest=1")
    );
}

#[test]
fn restore_skips_expired_cookies() {
    let mut all = populated().export();
    let mut old = all[1].clone();
    old.name = "stale".to_string();
    old.expires = Some(1_000_000);
    all.push(old);
    let mut restored = Jar::restore(CookieLimits::default(), all);
    assert_eq!(restored.len(), populated().len());
    assert!(restored.export().iter().all(|c| c.name != "stale"));
    assert_eq!(restored.take_changes(), []);
}

#[test]
fn restored_host_only_stays_host_only_and_domain_cookie_reaches_subdomains() {
    let mut restored = Jar::restore(CookieLimits::default(), populated().export());
    let theme = restored
        .export()
        .into_iter()
        .find(|c| c.name == "theme")
        .unwrap();
    assert!(theme.host_only);
    assert_eq!(
        sent(&mut restored, "http://www.example.com/").as_deref(),
        Some("theme=light; zeta=1")
    );
    assert_eq!(sent(&mut restored, "http://sub.www.example.com/"), None);
    assert_eq!(sent(&mut restored, "http://example.com/"), None);
    // The Secure, Domain=example.com cookie.
    assert_eq!(
        sent(&mut restored, "https://example.com/").as_deref(),
        Some("sid=abc")
    );
    assert_eq!(
        sent(&mut restored, "https://x.y.example.com/").as_deref(),
        Some("sid=abc")
    );
    assert_eq!(
        sent(&mut restored, "http://x.example.com/"),
        None,
        "still Secure"
    );
}

#[test]
fn restore_limits_still_evict_the_oldest() {
    let mut restored = Jar::restore(
        CookieLimits {
            max_per_domain: 2,
            max_per_session: 3000,
            max_bytes: 4096,
        },
        vec![
            StoredCookie {
                domain: "example.com".to_string(),
                host_only: true,
                path: "/".to_string(),
                name: "b".to_string(),
                value: "1".to_string(),
                secure: false,
                http_only: false,
                same_site: None,
                expires: None,
                created: 8,
            },
            StoredCookie {
                domain: "example.com".to_string(),
                host_only: true,
                path: "/".to_string(),
                name: "a".to_string(),
                value: "1".to_string(),
                secure: false,
                http_only: false,
                same_site: None,
                expires: None,
                created: 3,
            },
        ],
    );
    set(&mut restored, "http://example.com/", "c=1");
    let changes = restored.take_changes();
    assert_eq!(changes[1..], [delete("example.com", "/", "a")]);
    assert_eq!(
        sent(&mut restored, "http://example.com/").as_deref(),
        Some("b=1; c=1")
    );
}

#[test]
fn restore_keeps_cookies_of_an_ipv6_host() {
    let mut j = jar();
    assert_eq!(
        set(&mut j, "http://[::1]:8080/", "v6=1"),
        SetOutcome::Stored
    );
    assert_eq!(sent(&mut j, "http://[::1]:8080/").as_deref(), Some("v6=1"));
    let mut restored = Jar::restore(CookieLimits::default(), j.export());
    assert_eq!(restored.export(), j.export());
    assert_eq!(
        sent(&mut restored, "http://[::1]:8080/").as_deref(),
        Some("v6=1")
    );
    // An import may spell the address without brackets.
    let mut bare = j.export();
    bare[0].domain = "::1".to_string();
    let mut restored = Jar::restore(CookieLimits::default(), bare);
    assert_eq!(
        sent(&mut restored, "http://[::1]/").as_deref(),
        Some("v6=1")
    );
}

// ---- the fast paths: the same cookie again, and headers already worked out ----

#[test]
fn the_same_cookie_with_another_attribute_is_an_update() {
    let mut j = jar();
    set(&mut j, "https://example.com/", "sid=1; Path=/");
    j.take_changes();
    for (header, check) in [
        ("sid=1; Path=/; HttpOnly", "http_only"),
        ("sid=1; Path=/; HttpOnly; Secure", "secure"),
        (
            "sid=1; Path=/; HttpOnly; Secure; SameSite=Strict",
            "same_site",
        ),
        (
            "sid=1; Path=/; HttpOnly; Secure; SameSite=Strict; Domain=example.com",
            "domain",
        ),
        (
            "sid=1; Path=/; HttpOnly; Secure; SameSite=Strict; Domain=example.com; Max-Age=600",
            "expiry",
        ),
    ] {
        assert_eq!(
            set(&mut j, "https://example.com/", header),
            SetOutcome::Updated,
            "{check}"
        );
        assert_eq!(j.take_changes().len(), 1, "{check}");
        assert_eq!(
            set(&mut j, "https://example.com/", header),
            SetOutcome::Unchanged,
            "{check} again"
        );
    }
    let only = &j.export()[0];
    assert!(only.http_only && only.secure && !only.host_only);
    assert_eq!(only.same_site.as_deref(), Some("Strict"));
}

#[test]
fn a_header_worked_out_before_a_change_is_not_sent_after_it() {
    let mut j = jar();
    set(&mut j, "http://example.com/", "a=1");
    assert_eq!(sent(&mut j, "http://example.com/x").as_deref(), Some("a=1"));
    set(&mut j, "http://example.com/", "b=2");
    assert_eq!(
        sent(&mut j, "http://example.com/x").as_deref(),
        Some("a=1; b=2")
    );
    set(&mut j, "http://example.com/", "a=3");
    assert_eq!(
        sent(&mut j, "http://example.com/x").as_deref(),
        Some("a=3; b=2")
    );
    j.remove_matching(None, Some("a"));
    assert_eq!(sent(&mut j, "http://example.com/x").as_deref(), Some("b=2"));
    let mut other = jar();
    set(&mut other, "http://example.com/", "c=4");
    j.import(other.export(), false);
    assert_eq!(
        sent(&mut j, "http://example.com/x").as_deref(),
        Some("b=2; c=4")
    );
    set(&mut j, "http://example.com/", "b=gone; Max-Age=0");
    assert_eq!(sent(&mut j, "http://example.com/x").as_deref(), Some("c=4"));
    j.remove_matching(None, None);
    assert_eq!(sent(&mut j, "http://example.com/x"), None);
}

#[test]
fn headers_worked_out_differ_by_scheme_host_and_path() {
    let mut j = jar();
    set(&mut j, "https://example.com/", "s=1; Secure");
    set(&mut j, "http://example.com/app", "p=1; Path=/app");
    set(&mut j, "http://example.com/", "d=1; Domain=example.com");
    for _ in 0..2 {
        assert_eq!(sent(&mut j, "http://example.com/").as_deref(), Some("d=1"));
        assert_eq!(
            sent(&mut j, "https://example.com/").as_deref(),
            Some("s=1; d=1")
        );
        assert_eq!(
            sent(&mut j, "http://example.com/app/x").as_deref(),
            Some("p=1; d=1")
        );
        assert_eq!(
            sent(&mut j, "http://www.example.com/").as_deref(),
            Some("d=1")
        );
        assert_eq!(sent(&mut j, "http://other.example/"), None);
    }
}

#[test]
fn a_header_worked_out_stops_at_its_first_cookies_expiry() {
    let mut j = jar();
    set(&mut j, "http://example.com/", "short=1; Max-Age=1");
    set(&mut j, "http://example.com/", "long=1; Max-Age=3600");
    assert_eq!(
        sent(&mut j, "http://example.com/").as_deref(),
        Some("short=1; long=1")
    );
    // The passing of time is what is tested: there is nothing to wait on instead.
    std::thread::sleep(std::time::Duration::from_millis(2100));
    assert_eq!(
        sent(&mut j, "http://example.com/").as_deref(),
        Some("long=1")
    );
}

#[test]
fn the_client_cookie_merge_does_not_use_or_fill_the_cache() {
    let mut j = jar();
    set(&mut j, "http://example.com/", "a=1");
    assert_eq!(
        sent_with(&mut j, "http://example.com/", "a=mine; z=9").as_deref(),
        Some("a=mine; z=9")
    );
    assert_eq!(sent(&mut j, "http://example.com/").as_deref(), Some("a=1"));
    assert_eq!(
        sent_with(&mut j, "http://example.com/", "z=9").as_deref(),
        Some("z=9; a=1")
    );
}

#[test]
fn a_set_cookie_that_changed_nothing_counts_again_once_the_jar_changes() {
    let mut j = jar();
    set(&mut j, "http://example.com/", "a=1");
    assert_eq!(
        set(&mut j, "http://example.com/", "a=1"),
        SetOutcome::Unchanged
    );
    // Remembered per request host: from another host it is another cookie.
    assert_eq!(
        set(&mut j, "http://other.example/", "a=1"),
        SetOutcome::Stored
    );
    j.remove_matching(Some("example.com"), Some("a"));
    assert_eq!(
        set(&mut j, "http://example.com/", "a=1"),
        SetOutcome::Stored
    );
    let mut other = jar();
    set(&mut other, "http://example.com/", "a=2");
    j.import(other.export(), false);
    assert_eq!(
        set(&mut j, "http://example.com/", "a=1"),
        SetOutcome::Updated
    );
    assert_eq!(sent(&mut j, "http://example.com/").as_deref(), Some("a=1"));
}
