//! Logging in to the console: an operator gives an API token once; the console keeps a
//! session in memory with the token's name and permissions (never the token) and gives the
//! browser a random session id in a cookie that scripts cannot read (`HttpOnly`) and other
//! sites cannot send (`SameSite=Strict`). Sessions end after [`SESSION_LIFE`], on logout,
//! and when the node restarts.
//!
//! Every POST is checked against cross-site requests twice: the browser's `Sec-Fetch-Site`
//! and `Origin` headers, when sent, must name this console's own origin; and the form must
//! carry the session's CSRF token (login, which has no session yet, has the first check).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Form;
use axum::extract::rejection::FormRejection;
use axum::extract::{FromRequestParts, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use maud::html;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::error::ConsoleError;
use super::viewer::Viewer;
use super::{Console, page};
use crate::api::auth::Caller;
use crate::model::Permission;

/// The session cookie's name.
pub const COOKIE: &str = "sluice_console";
/// How long a session lasts after login.
pub const SESSION_LIFE: Duration = Duration::from_secs(12 * 3600);
/// Most sessions kept at once; the oldest goes first.
const MOST_SESSIONS: usize = 10_000;

/// One logged-in operator.
#[derive(Debug, Clone)]
struct Session {
    caller: Caller,
    csrf: String,
    expires: Instant,
}

/// The console's sessions, by the SHA-256 of their id (the id itself is only in the cookie).
#[derive(Debug, Default)]
pub struct Sessions(Mutex<HashMap<[u8; 32], Session>>);

fn key_of(id: &str) -> [u8; 32] {
    Sha256::digest(id.as_bytes()).into()
}

fn random_hex() -> String {
    hex::encode(rand::random::<[u8; 32]>())
}

impl Sessions {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], Session>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A new session for `caller`; returns its id (for the cookie).
    fn open(&self, caller: Caller) -> String {
        let id = random_hex();
        let now = Instant::now();
        let mut sessions = self.lock();
        sessions.retain(|_, s| s.expires > now);
        if sessions.len() >= MOST_SESSIONS
            && let Some(oldest) = sessions
                .iter()
                .min_by_key(|(_, s)| s.expires)
                .map(|(k, _)| *k)
        {
            sessions.remove(&oldest);
        }
        sessions.insert(
            key_of(&id),
            Session {
                caller,
                csrf: random_hex(),
                expires: now + SESSION_LIFE,
            },
        );
        id
    }

    fn find(&self, id: &str) -> Option<Session> {
        let key = key_of(id);
        let mut sessions = self.lock();
        match sessions.get(&key) {
            Some(s) if s.expires > Instant::now() => Some(s.clone()),
            Some(_) => {
                sessions.remove(&key);
                None
            }
            None => None,
        }
    }

    fn close(&self, id: &str) {
        self.lock().remove(&key_of(id));
    }
}

/// No session: a browser is sent to log in (and back), anything else gets 401.
#[derive(Debug)]
pub struct LoginFirst {
    next: String,
    page: bool,
}

impl IntoResponse for LoginFirst {
    fn into_response(self) -> Response {
        if self.page {
            let to = format!("/ui/login?next={}", page::encode_query(&self.next));
            Redirect::to(&to).into_response()
        } else {
            ConsoleError::new(StatusCode::UNAUTHORIZED, "log in to the console first")
                .into_response()
        }
    }
}

fn cookie_value<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

impl FromRequestParts<Arc<Console>> for Viewer {
    type Rejection = LoginFirst;

    async fn from_request_parts(
        parts: &mut Parts,
        console: &Arc<Console>,
    ) -> Result<Self, Self::Rejection> {
        let found = cookie_value(&parts.headers, COOKIE)
            .and_then(|id| Some((id.to_string(), console.sessions.find(id)?)));
        match found {
            Some((session, s)) => Ok(Viewer {
                caller: s.caller,
                csrf: s.csrf,
                session,
            }),
            None => Err(LoginFirst {
                next: safe_next(parts.uri.path_and_query().map(|p| p.as_str())),
                // A GET from a person is sent to log in; a POST or a stream gets 401.
                page: parts.method == axum::http::Method::GET
                    && !parts.uri.path().ends_with("/live")
                    && !parts.uri.path().starts_with("/ui/live/"),
            }),
        }
    }
}

/// 403 unless the request comes from a page of this console: `Sec-Fetch-Site` (when the
/// browser sends it) is `same-origin` or `none`, and `Origin` (when sent) is this host.
pub fn same_origin(headers: &HeaderMap) -> Result<(), ConsoleError> {
    let refused = |why: &str| {
        tracing::warn!("console: refused a cross-site request ({why})");
        Err(ConsoleError::forbidden(format!(
            "refused: the request does not come from the console's own pages ({why})"
        )))
    };
    if let Some(site) = headers.get("sec-fetch-site") {
        let site = site.to_str().unwrap_or("");
        if !matches!(site, "same-origin" | "none") {
            return refused("Sec-Fetch-Site");
        }
    }
    if let Some(origin) = headers.get(header::ORIGIN) {
        let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
        let origin = origin.to_str().unwrap_or("");
        let authority = origin
            .strip_prefix("http://")
            .or_else(|| origin.strip_prefix("https://"));
        if host.is_none() || authority != host {
            return refused("Origin");
        }
    }
    Ok(())
}

/// A path under `/ui` to go back to after login; anything else means the overview.
fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(n)
            if n.starts_with("/ui")
                && !n.starts_with("//")
                && !n.contains('\\')
                && !n.starts_with("/ui/login") =>
        {
            n.to_string()
        }
        _ => "/ui".into(),
    }
}

/// Query of the login page.
#[derive(Debug, Deserialize, Default)]
pub struct LoginQuery {
    next: Option<String>,
}

/// `GET /ui/login`: the form that asks for a token.
pub async fn login_page(
    query: Result<Query<LoginQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let next = safe_next(query.as_ref().ok().and_then(|q| q.next.as_deref()));
    login_form(&next, None, StatusCode::OK)
}

fn login_form(next: &str, problem: Option<&str>, status: StatusCode) -> Response {
    let body = html! {
        section.login {
            h1 { "Sluice console" }
            p { "Log in with an API token (as " code { "sluice token" } " prints it). The console acts with its permissions." }
            @if let Some(problem) = problem { p.problem role="alert" { (problem) } }
            form method="post" action="/ui/login" {
                input type="hidden" name="next" value=(next);
                label for="token" { "API token" }
                input #token type="password" name="token" autocomplete="off" required autofocus;
                button type="submit" { "Log in" }
            }
        }
    };
    (status, page::bare("Log in", body)).into_response()
}

/// The login form.
#[derive(Debug, Deserialize)]
pub struct LoginForm {
    token: String,
    next: Option<String>,
}

/// `POST /ui/login`: a known token opens a session; the cookie goes back with a redirect.
pub async fn login(
    State(console): State<Arc<Console>>,
    headers: HeaderMap,
    form: Result<Form<LoginForm>, FormRejection>,
) -> Result<Response, ConsoleError> {
    same_origin(&headers)?;
    let Form(form) = form.map_err(|e| ConsoleError::bad_request(e.body_text()))?;
    let next = safe_next(form.next.as_deref());
    let Some(caller) = console.api.tokens().authenticate(&form.token) else {
        tracing::info!("console: a login with an unknown token was refused");
        return Ok(login_form(
            &next,
            Some("Unknown token."),
            StatusCode::UNAUTHORIZED,
        ));
    };
    if !caller.may(&Permission::Read) {
        return Ok(login_form(
            &next,
            Some("This token lacks the permission `read`, which the console needs."),
            StatusCode::FORBIDDEN,
        ));
    }
    tracing::info!(caller = %caller.name, "console: logged in");
    let id = console.sessions.open(caller);
    let cookie = format!(
        "{COOKIE}={id}; HttpOnly; SameSite=Strict; Path=/ui; Max-Age={}",
        SESSION_LIFE.as_secs()
    );
    Ok(([(header::SET_COOKIE, cookie)], Redirect::to(&next)).into_response())
}

/// A form that carries only the CSRF token.
#[derive(Debug, Deserialize)]
pub struct CsrfForm {
    /// The session's CSRF token.
    pub csrf: String,
}

/// `POST /ui/logout`: the session ends and the cookie is cleared.
pub async fn logout(
    State(console): State<Arc<Console>>,
    viewer: Viewer,
    headers: HeaderMap,
    form: Result<Form<CsrfForm>, FormRejection>,
) -> Result<Response, ConsoleError> {
    same_origin(&headers)?;
    let Form(form) = form.map_err(|e| ConsoleError::bad_request(e.body_text()))?;
    viewer.check_csrf(&form.csrf)?;
    console.sessions.close(&viewer.session);
    tracing::info!(caller = %viewer.caller.name, "console: logged out");
    let cookie = format!("{COOKIE}=; HttpOnly; SameSite=Strict; Path=/ui; Max-Age=0");
    Ok(([(header::SET_COOKIE, cookie)], Redirect::to("/ui/login")).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_console_paths_are_returned_to_after_login() {
        assert_eq!(safe_next(Some("/ui/instances?x=1")), "/ui/instances?x=1");
        assert_eq!(safe_next(Some("https://evil.example/")), "/ui");
        assert_eq!(safe_next(Some("//evil.example/ui")), "/ui");
        assert_eq!(safe_next(Some("/ui/login?next=/ui")), "/ui");
        assert_eq!(safe_next(None), "/ui");
    }

    #[test]
    fn cross_site_posts_are_refused() {
        let mut headers = HeaderMap::new();
        headers.insert(header::HOST, "127.0.0.1:7465".parse().unwrap());
        assert!(
            same_origin(&headers).is_ok(),
            "no browser headers: a script client"
        );
        headers.insert(header::ORIGIN, "http://127.0.0.1:7465".parse().unwrap());
        headers.insert("sec-fetch-site", "same-origin".parse().unwrap());
        assert!(same_origin(&headers).is_ok());
        headers.insert("sec-fetch-site", "cross-site".parse().unwrap());
        assert!(same_origin(&headers).is_err());
        headers.insert("sec-fetch-site", "same-origin".parse().unwrap());
        headers.insert(header::ORIGIN, "http://evil.example".parse().unwrap());
        assert!(same_origin(&headers).is_err());
    }

    #[test]
    fn a_session_is_found_by_its_id_only_and_ends_on_close() {
        let sessions = Sessions::default();
        let (token, hash) = crate::api::new_token();
        let tokens = crate::api::Tokens::from_config(&[crate::config::TokenConfig {
            name: "ops".into(),
            sha256: hash,
            permissions: vec!["read".into()],
        }]);
        let id = sessions.open(tokens.authenticate(&token).unwrap());
        assert_eq!(sessions.find(&id).unwrap().caller.name, "ops");
        assert!(sessions.find(&token).is_none());
        sessions.close(&id);
        assert!(sessions.find(&id).is_none());
    }
}
