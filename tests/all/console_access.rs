//! The console's access rules over plain HTTP, as a script or another site would try
//! them: a read-only session is refused every action (403) whatever its form says; an
//! operator's session is refused without its CSRF token, from another origin, or without
//! a session at all; and bad input gets a 4xx, never a 5xx.

use crate::console::{sleeping_and_held, status_of};
use crate::served::Served;

/// A client that keeps redirects to itself.
fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// Log in over plain HTTP as a browser would; the session cookie (`name=value`).
async fn session(node: &Served, token: &str) -> String {
    let response = http()
        .post(format!("{}/ui/login", node.url))
        .header("origin", &node.url)
        .form(&[("token", token), ("next", "/ui")])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 303);
    let cookie = response.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .to_string();
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/ui"] {
        assert!(cookie.contains(attribute), "{cookie}");
    }
    assert!(
        !cookie.contains(token),
        "the cookie holds a session id, not the token"
    );
    cookie.split(';').next().unwrap().to_string()
}

/// The CSRF token in the page at `path`.
async fn csrf(node: &Served, cookie: &str, path: &str) -> String {
    let page = http()
        .get(format!("{}{path}", node.url))
        .header("cookie", cookie)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let at = page
        .find("name=\"csrf\" value=\"")
        .expect("a form with a CSRF token")
        + 19;
    page[at..at + 64].to_string()
}

/// POST a console form; the status.
async fn post_form(
    node: &Served,
    path: &str,
    cookie: Option<&str>,
    origin: &str,
    form: &[(&str, &str)],
) -> u16 {
    let mut request = http()
        .post(format!("{}{path}", node.url))
        .header("origin", origin)
        .form(form);
    if let Some(cookie) = cookie {
        request = request.header("cookie", cookie);
    }
    request.send().await.unwrap().status().as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn actions_refuse_a_read_only_session_a_missing_csrf_token_and_other_origins() {
    let dir = tempfile::tempdir().unwrap();
    let ready = tempfile::tempdir().unwrap();
    let (node, sleeping, held) = sleeping_and_held(dir.path(), ready.path()).await;

    // The action routes refuse a read-only session, whatever the form says.
    let viewer = session(&node, &node.tokens.read).await;
    let token = csrf(&node, &viewer, "/ui").await;
    let refused = [
        format!("/ui/instances/{sleeping}/cancel"),
        format!("/ui/hospital/{held}/retry"),
        format!("/ui/hospital/{held}/kill"),
        "/ui/triggers/yearly/pause".to_string(),
        "/ui/start".to_string(),
    ];
    for path in &refused {
        let form = [
            ("csrf", token.as_str()),
            ("flow", "sleeper"),
            ("input", "{\"ms\": 1}"),
        ];
        let code = post_form(&node, path, Some(&viewer), &node.url, &form).await;
        assert_eq!(code, 403, "POST {path} as a viewer");
    }
    assert_eq!(status_of(&node, &sleeping).await, "running");
    assert_eq!(status_of(&node, &held).await, "held");

    // An operator's session too, without its CSRF token or from another site.
    let ops = session(&node, &node.tokens.all).await;
    let token = csrf(&node, &ops, &format!("/ui/instances/{sleeping}")).await;
    let cancel = format!("/ui/instances/{sleeping}/cancel");
    let wrong = "0".repeat(64);
    assert_eq!(
        post_form(&node, &cancel, Some(&ops), &node.url, &[("csrf", &wrong)]).await,
        403
    );
    assert_eq!(
        post_form(
            &node,
            &cancel,
            Some(&ops),
            "http://evil.example",
            &[("csrf", &token)]
        )
        .await,
        403
    );
    assert_eq!(
        post_form(&node, &cancel, None, &node.url, &[("csrf", &token)]).await,
        401
    );
    assert_eq!(
        post_form(&node, &cancel, Some(&ops), &node.url, &[]).await,
        400
    );
    assert_eq!(status_of(&node, &sleeping).await, "running");
    // Bad input is a 4xx, never a 5xx.
    for (path, form) in [
        (
            "/ui/start",
            vec![
                ("csrf", token.as_str()),
                ("flow", "sleeper"),
                ("input", "{nope"),
            ],
        ),
        (
            "/ui/start",
            vec![("csrf", token.as_str()), ("flow", "nope"), ("input", "{}")],
        ),
        (
            "/ui/start",
            vec![
                ("csrf", token.as_str()),
                ("flow", "sleeper"),
                ("input", "{}"),
                ("priority", "urgent"),
            ],
        ),
        ("/ui/hospital/no-such/retry", vec![("csrf", token.as_str())]),
        ("/ui/triggers/nope/pause", vec![("csrf", token.as_str())]),
    ] {
        let code = post_form(&node, path, Some(&ops), &node.url, &form).await;
        assert!((400..500).contains(&code), "POST {path} {form:?}: {code}");
    }
    for path in [
        "/ui/instances/no%2Fsuch",
        "/ui/instances?cursor=x",
        "/ui/instances?status=odd",
        "/ui/instances?within=3y",
        "/ui/nowhere",
        "/ui/assets/nope.js",
    ] {
        let code = http()
            .get(format!("{}{path}", node.url))
            .header("cookie", &ops)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16();
        assert!((400..500).contains(&code), "GET {path}: {code}");
    }
    assert_eq!(
        post_form(&node, &cancel, Some(&ops), &node.url, &[("csrf", &token)]).await,
        303
    );
    assert_eq!(status_of(&node, &sleeping).await, "cancelled");
}
