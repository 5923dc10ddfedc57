//! URLs that may carry a secret (a database's password), shown without it.

/// `url` without the password of its user info (`scheme://user:pass@host` →
/// `scheme://user@host`), for messages and logs.
pub fn without_password(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let user_info = &url[scheme + 3..at];
            let user = user_info.split(':').next().unwrap_or_default();
            format!("{}{}@{}", &url[..scheme + 3], user, &url[at + 1..])
        }
        _ => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::without_password;

    #[test]
    fn a_password_never_reaches_a_message() {
        assert_eq!(
            without_password("postgres://sluice:s3cret@db:5432/x"),
            "postgres://sluice@db:5432/x"
        );
        assert_eq!(
            without_password("postgres://db:5432/x"),
            "postgres://db:5432/x"
        );
        assert_eq!(without_password("not a url"), "not a url");
    }
}
