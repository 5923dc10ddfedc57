//! The frame every console page shares (head, navigation, the viewer) and small pieces used
//! across pages: times, statuses, links to instances, JSON blocks, action buttons.
//!
//! maud escapes every value put in a page, in text and in attributes, so whatever a flow
//! wrote reaches the browser as text. Nothing here uses `PreEscaped` on such a value.

use axum::response::{Html, IntoResponse, Response};
use maud::{DOCTYPE, Markup, html};

use super::error::ConsoleError;
use super::viewer::Viewer;
use crate::model::Permission;

/// Which navigation entry a page belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Nav {
    /// The overview.
    Overview,
    /// The instance list and one instance.
    Instances,
    /// The hospital.
    Hospital,
    /// Flows and triggers.
    Flows,
    /// The start form.
    Start,
}

/// What a full page needs besides its body.
pub struct Frame<'a> {
    /// The page's title.
    pub title: &'a str,
    /// Its navigation entry.
    pub nav: Nav,
    /// Who looks.
    pub viewer: &'a Viewer,
    /// The node's identity.
    pub node: &'a str,
    /// What the script keeps live on this page (`overview`, `instance`), if anything.
    pub live: Option<&'a str>,
    /// Whether the viewer may start some flow (the Start entry shows).
    pub may_start: bool,
}

fn head(title: &str) -> Markup {
    html! {
        head {
            meta charset="utf-8";
            meta name="viewport" content="width=device-width, initial-scale=1";
            title { (title) " · Sluice" }
            link rel="icon" href="/ui/assets/icon.svg" type="image/svg+xml";
            link rel="stylesheet" href="/ui/assets/console.css";
            script src="/ui/assets/console.js" defer {}
        }
    }
}

/// A page without navigation: login and errors.
pub fn bare(title: &str, body: Markup) -> Html<String> {
    Html(
        html! {
            (DOCTYPE)
            html lang="en" {
                (head(title))
                body.bare { main { (body) } }
            }
        }
        .into_string(),
    )
}

/// A full page: navigation, the viewer and logout, then `body`.
pub fn full(frame: &Frame<'_>, body: Markup) -> Html<String> {
    let entry = |nav: Nav, href: &str, label: &str| {
        html! {
            a href=(href) class=[(frame.nav == nav).then_some("active")] { (label) }
        }
    };
    Html(
        html! {
            (DOCTYPE)
            html lang="en" {
                (head(frame.title))
                body data-live=[frame.live] {
                    header.top {
                        a.brand href="/ui" { "Sluice" span.node { (frame.node) } }
                        nav {
                            (entry(Nav::Overview, "/ui", "Overview"))
                            (entry(Nav::Instances, "/ui/instances", "Instances"))
                            (entry(Nav::Hospital, "/ui/hospital", "Hospital"))
                            (entry(Nav::Flows, "/ui/flows", "Flows"))
                            @if frame.may_start { (entry(Nav::Start, "/ui/start", "Start")) }
                        }
                        form.logout method="post" action="/ui/logout" {
                            span.who title="The token this console acts with" { (frame.viewer.caller.name) }
                            (csrf(frame.viewer))
                            button.link type="submit" { "Log out" }
                        }
                    }
                    main { (body) }
                }
            }
        }
        .into_string(),
    )
}

/// The hidden CSRF field of a form.
pub fn csrf(viewer: &Viewer) -> Markup {
    html! { input type="hidden" name="csrf" value=(viewer.csrf); }
}

/// A one-button form that POSTs to `action`.
pub fn button(viewer: &Viewer, action: &str, label: &str, class: &str) -> Markup {
    html! {
        form.action method="post" action=(action) {
            (csrf(viewer))
            button type="submit" class=(class) { (label) }
        }
    }
}

/// A time (RFC 3339, UTC): shown as is, turned into the viewer's zone by the script, with
/// the exact value on hover.
pub fn time(at: Option<&str>) -> Markup {
    match at {
        Some(at) => html! { time datetime=(at) title=(at) { (at) } },
        None => html! { span.none { "—" } },
    }
}

/// A status as a coloured word.
pub fn status(status: &str) -> Markup {
    html! { span class={ "status s-" (status) } { (status) } }
}

/// `s` as one URL path segment: unreserved characters stay, every other byte is escaped.
pub fn encode_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `s` as a query value.
pub fn encode_query(s: &str) -> String {
    encode_segment(s)
}

/// The stable address of instance `id`.
pub fn instance_href(id: &str) -> String {
    format!("/ui/instances/{}", encode_segment(id))
}

/// A link to instance `id`, showing its id.
pub fn instance_link(id: &str) -> Markup {
    html! { a.id href=(instance_href(id)) { (id) } }
}

/// A JSON value, pretty-printed, as text.
pub fn json(value: &serde_json::Value) -> Markup {
    let text = serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string());
    html! { pre.json { (text) } }
}

/// A JSON value on one line, as text.
pub fn json_line(value: &serde_json::Value) -> Markup {
    html! { code.json { (value.to_string()) } }
}

/// Whether `viewer` may start some registered flow among `flows`.
pub fn may_start_any<'a>(viewer: &Viewer, mut flows: impl Iterator<Item = &'a str>) -> bool {
    flows.any(|f| viewer.may(&Permission::Start(Some(f.to_string()))))
}

/// A table wrapped so that it scrolls sideways on a narrow screen instead of the page.
pub fn scroll(table: Markup) -> Markup {
    html! { div.scroll { (table) } }
}

/// A refused or failed request as a page of its own (see [`ConsoleError`]).
impl IntoResponse for ConsoleError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            tracing::warn!(status = %self.status, "console: {}", self.message);
        }
        let reason = self.status.canonical_reason().unwrap_or("Error");
        let title = format!("{} {reason}", self.status.as_u16());
        let body = html! {
            section.error {
                h1 { (title) }
                p.message { (self.message) }
                p { a href="/ui" { "Back to the overview" } }
            }
        };
        (self.status, bare(&title, body)).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_encoded_as_one_segment() {
        assert_eq!(instance_href("a.1.~f0"), "/ui/instances/a.1.~f0");
        assert_eq!(instance_href("a/b?c#d"), "/ui/instances/a%2Fb%3Fc%23d");
        assert_eq!(encode_query("/ui/x?y=1&z"), "%2Fui%2Fx%3Fy%3D1%26z");
    }

    #[test]
    fn markup_from_a_flow_is_text() {
        let shown = json(&serde_json::json!("<script>alert(1)</script>")).into_string();
        assert!(!shown.contains("<script>"), "{shown}");
        assert!(shown.contains("&lt;script&gt;"), "{shown}");
    }
}
