//! Who is looking: the operator of a request, with the permissions of the token that opened
//! the session and the session's CSRF token. Made from the session cookie (see
//! [`super::session`]); pages ask it what to show and actions what to allow.

use subtle::ConstantTimeEq;

use super::error::ConsoleError;
use crate::api::auth::Caller;
use crate::model::Permission;

/// The operator of a request: its session's caller and CSRF token. A page that needs one
/// sends a browser without a session to the login page.
#[derive(Debug, Clone)]
pub struct Viewer {
    /// The token's name and permissions.
    pub caller: Caller,
    /// The session's CSRF token, put in every form.
    pub csrf: String,
    /// The session's id (its cookie), for logging out.
    pub(super) session: String,
}

impl Viewer {
    /// Whether the viewer's token holds `needed`.
    pub fn may(&self, needed: &Permission) -> bool {
        self.caller.may(needed)
    }

    /// 403 (as a page) unless the viewer's token holds `needed`.
    pub fn require(&self, needed: Permission) -> Result<(), ConsoleError> {
        self.caller
            .require(needed)
            .map_err(|e| ConsoleError::forbidden(e.message().to_string()))
    }

    /// 403 unless `form_csrf` is this session's CSRF token (compared in constant time).
    pub fn check_csrf(&self, form_csrf: &str) -> Result<(), ConsoleError> {
        if bool::from(self.csrf.as_bytes().ct_eq(form_csrf.as_bytes())) {
            Ok(())
        } else {
            Err(ConsoleError::forbidden(
                "the form's CSRF token does not match this session; reload the page and try again",
            ))
        }
    }
}
