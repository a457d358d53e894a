//! RTSP credentials from a file, so that neither the config nor a URL holds a password. Errors name the file,
//! never its content; the password never reaches a log line or an event.

use std::path::Path;

/// A user and a password; `Debug` shows the user only.
pub struct Credentials {
    pub user: String,
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials").field("user", &self.user).finish_non_exhaustive()
    }
}

impl Credentials {
    /// Reads `user:password` (one line) or the user and the password on two lines; a trailing newline is
    /// ignored.
    pub fn read(path: &Path) -> Result<Credentials, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        Credentials::parse(&text).ok_or_else(|| {
            format!("{} holds neither `user:password` nor a user and a password on two lines", path.display())
        })
    }

    fn parse(text: &str) -> Option<Credentials> {
        let text = text.strip_suffix('\n').unwrap_or(text);
        let text = text.strip_suffix('\r').unwrap_or(text);
        let (user, password) = match text.split_once('\n') {
            Some((user, password)) => (user.trim_end_matches('\r'), password.trim_end_matches(['\r', '\n'])),
            None => text.split_once(':')?,
        };
        (!user.is_empty() && !password.contains('\n'))
            .then(|| Credentials { user: user.into(), password: password.into() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(text: &str) -> Option<(String, String)> {
        Credentials::parse(text).map(|c| (c.user, c.password))
    }

    #[test]
    fn one_line_or_two_lines() {
        assert_eq!(parsed("cam:s3:cret\n"), Some(("cam".into(), "s3:cret".into())));
        assert_eq!(parsed("cam\ns3:cret\n"), Some(("cam".into(), "s3:cret".into())));
        assert_eq!(parsed("cam\r\npw\r\n"), Some(("cam".into(), "pw".into())));
        assert_eq!(parsed("nocolon\n"), None);
        assert_eq!(parsed(":pw"), None);
        assert_eq!(parsed("a\nb\nc\n"), None);
    }

    #[test]
    fn errors_and_debug_never_show_the_password() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("creds");
        std::fs::write(&file, "hunter2-without-colon\n").unwrap();
        let error = Credentials::read(&file).unwrap_err();
        assert!(error.contains("creds") && !error.contains("hunter2"), "{error}");
        let debug = format!("{:?}", Credentials { user: "cam".into(), password: "hunter2".into() });
        assert!(debug.contains("cam") && !debug.contains("hunter2"), "{debug}");
    }
}
