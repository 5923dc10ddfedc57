//! The operator console: web pages under `/ui`, served by `sluice serve` beside the API.
//!
//! Server-rendered HTML (maud escapes every value, so a string from a flow is always text),
//! one stylesheet and one script embedded in the binary (no CDN, nothing fetched at run
//! time), and Server-Sent Events for what changes live. The console is another edge of the
//! node beside [`crate::api`]: it reads and acts through the same `Node` methods and API
//! helpers, with the permissions of the token its operator logged in with.
//!
//! Security: a session cookie (`HttpOnly`, `SameSite=Strict`, `Path=/ui`) names a session
//! kept in memory that holds the token's name and permissions, never the token. Every POST
//! must come from the console's own pages (its `Origin`/`Sec-Fetch-Site` say so) and carry
//! the session's CSRF token. Pages are sent with a Content-Security-Policy that allows
//! scripts and styles from the console's own files only.

mod actions;
mod error;
mod flows;
mod history;
mod hospital;
mod instance;
mod instances;
mod live;
mod overview;
mod page;
mod session;
mod start;
mod viewer;

use std::sync::Arc;
use std::time::{Instant, SystemTime};

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderValue, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};

use crate::api::ApiState;
use history::History;
use maud::Markup;
use page::{Frame, Nav};
use session::Sessions;
use viewer::Viewer;

/// The largest form the console takes (a start's input included).
const FORM_LIMIT: usize = 1 << 20;

/// What the console's handlers share.
pub struct Console {
    api: Arc<ApiState>,
    sessions: Sessions,
    history: Arc<History>,
    started: Instant,
    started_at: SystemTime,
}

impl Console {
    fn node(&self) -> &crate::node::Node {
        self.api.node()
    }

    /// A full page for `viewer`: the frame (navigation, the node, the viewer) around `body`.
    fn render(
        &self,
        viewer: &Viewer,
        title: &str,
        nav: Nav,
        live: Option<&str>,
        body: Markup,
    ) -> Html<String> {
        let flows = crate::api::flow_views(&self.api);
        let frame = Frame {
            title,
            nav,
            viewer,
            node: self.node().identity(),
            live,
            may_start: page::may_start_any(viewer, flows.iter().map(|f| f.name.as_str())),
        };
        page::full(&frame, body)
    }
}

/// The console's routes, all under `/ui`, to serve beside the API (see
/// [`crate::api::serve`]). Starts the task that samples the pools once a second for the
/// overview's chart (it ends when the router is dropped).
pub fn router(api: Arc<ApiState>) -> Router {
    let history = History::new();
    history::sample_every_second(&history, api.node().clone());
    let console = Arc::new(Console {
        api,
        sessions: Sessions::default(),
        history,
        started: Instant::now(),
        started_at: SystemTime::now(),
    });
    Router::new()
        .route("/ui", get(overview::page))
        .route("/ui/", get(|| async { Redirect::permanent("/ui") }))
        .route("/ui/login", get(session::login_page).post(session::login))
        .route("/ui/logout", post(session::logout))
        .route("/ui/instances", get(instances::page))
        .route("/ui/instances/{id}", get(instance::page))
        .route("/ui/instances/{id}/cancel", post(actions::cancel))
        .route("/ui/instances/{id}/live", get(live::instance))
        .route("/ui/hospital", get(hospital::page))
        .route("/ui/hospital/{id}/retry", post(actions::retry))
        .route("/ui/hospital/{id}/kill", post(actions::kill))
        .route("/ui/flows", get(flows::page))
        .route("/ui/triggers/{name}/pause", post(actions::pause))
        .route("/ui/triggers/{name}/resume", post(actions::resume))
        .route("/ui/start", get(start::page).post(start::submit))
        .route("/ui/live/overview", get(live::overview))
        .route("/ui/assets/{file}", get(asset))
        .route("/ui/{*rest}", get(error::not_found))
        .layer(DefaultBodyLimit::max(FORM_LIMIT))
        .layer(axum::middleware::map_response(protect))
        .with_state(console)
}

/// Headers on every console response: a strict Content-Security-Policy (scripts, styles
/// and connections to the console's own origin only, no inline script), no framing, no
/// sniffing, and no caching of pages that hold an operator's view.
async fn protect(mut response: Response) -> Response {
    let headers = response.headers_mut();
    let set = |headers: &mut axum::http::HeaderMap, name, value: &'static str| {
        headers.insert(name, HeaderValue::from_static(value));
    };
    set(
        headers,
        header::CONTENT_SECURITY_POLICY,
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
         connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    );
    set(headers, header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    set(headers, header::X_FRAME_OPTIONS, "DENY");
    set(headers, header::REFERRER_POLICY, "same-origin");
    if !headers.contains_key(header::CACHE_CONTROL) {
        set(headers, header::CACHE_CONTROL, "no-store");
    }
    response
}

/// The embedded assets: the stylesheet, the script, the icon.
async fn asset(axum::extract::Path(file): axum::extract::Path<String>) -> Response {
    let (body, kind): (&'static str, &'static str) = match file.as_str() {
        "console.css" => (
            include_str!("assets/console.css"),
            "text/css; charset=utf-8",
        ),
        "console.js" => (
            include_str!("assets/console.js"),
            "text/javascript; charset=utf-8",
        ),
        "icon.svg" => (include_str!("assets/icon.svg"), "image/svg+xml"),
        _ => return error::ConsoleError::not_found("no such asset").into_response(),
    };
    (
        [
            (header::CONTENT_TYPE, kind),
            (header::CACHE_CONTROL, "public, max-age=300"),
        ],
        body,
    )
        .into_response()
}
