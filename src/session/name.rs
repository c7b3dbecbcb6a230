//! Session names: 1–64 characters of `[A-Za-z0-9._-]`, so they are safe in URLs, file
//! names, log lines and metric labels.

pub const MAX_NAME_LEN: usize = 64;

pub fn valid_session_name(name: &str) -> bool {
    (1..=MAX_NAME_LEN).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_documented_alphabet() {
        assert!(valid_session_name("alice"));
        assert!(valid_session_name("ci-runner_2.prod"));
        assert!(valid_session_name(&"a".repeat(64)));
    }

    #[test]
    fn rejects_everything_else() {
        for bad in ["", "a b", "a/b", "é", "a:b", "a\nb"] {
            assert!(!valid_session_name(bad), "{bad:?}");
        }
        assert!(!valid_session_name(&"a".repeat(65)));
    }
}
