//! The operator console (`/ui`) in a real browser: headless Chromium drives a `sluice serve`
//! child as an operator would. Each test has its own node (data dir, cache dir, port 0) and
//! its own browser; each waits on what the page shows, checks the browser logged no error,
//! and leaves screenshots of what it saw in `target/console-screenshots/`.

use std::time::Duration;

use serde_json::{Value, json};

use crate::browser::Browser;
use crate::served::{Served, serve, served_config};
use crate::support::{flow_entry, guest};

/// A node for the console's tests: `flows` registered, `extra` config on top.
pub(crate) fn node(dir: &std::path::Path, flows: &[&str], extra: &str) -> Served {
    let (config, tokens) = served_config(dir, flows, extra);
    serve(&config, &dir.join("data"), tokens)
}

/// Start `flow` with `input` over the API; its id.
pub(crate) async fn start(node: &Served, flow: &str, input: Value) -> String {
    let (status, body) = node
        .post(&format!("/v1/flows/{flow}/start"), &input.to_string())
        .await;
    assert!(status == 202 || status == 200, "{status} {body}");
    body["id"].as_str().expect("an id").to_string()
}

/// The instance's status over the API.
pub(crate) async fn status_of(node: &Served, id: &str) -> String {
    let (code, body) = node.get(&format!("/v1/instances/{id}")).await;
    assert_eq!(code, 200, "{body}");
    body["status"].as_str().unwrap_or_default().to_string()
}

/// Wait (polling the API) until instance `id` has `status`.
pub(crate) async fn until_status(node: &Served, id: &str, status: &str) {
    let deadline = tokio::time::Instant::now() + crate::browser::PATIENCE;
    loop {
        let now = status_of(node, id).await;
        if now == status {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {id} to be {status} (it is {now})"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The text of a pool's figure in the overview's table.
fn cell(pool: &str, field: &str) -> String {
    format!("tr[data-pool='{pool}'] td[data-field='{field}']")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_overview_shows_each_pool_live_while_a_workload_runs() {
    let dir = tempfile::tempdir().unwrap();
    let extra = format!(
        "[pools.work]\nsize = 1\nqueue = 10\npreempt = false\n{}\n[[triggers.schedule]]\nname = \"yearly\"\ncron = \"0 0 1 1 *\"\nflow = \"hello\"\n",
        flow_entry("spin", "work")
    );
    let node = node(dir.path(), &["hello"], &extra);
    let browser = Browser::open(&node.url).await;

    browser.goto("/ui").await;
    browser.wait_for_path("the login page", "/ui/login").await;
    browser.screenshots("login").await;
    browser.login(&node.tokens.all).await;
    for pool in ["default", "work"] {
        browser.find(&format!("tr[data-pool='{pool}']")).await;
        browser
            .find(&format!("figure.chart[data-pool='{pool}']"))
            .await;
    }
    assert_eq!(
        browser.text(&cell("work", "size")).await.as_deref(),
        Some("1")
    );

    // Three spins of 2.5 s in a pool of one that does not preempt: one runs, two queue,
    // then all end.
    for _ in 0..3 {
        start(&node, "spin", json!({ "ms": 2500 })).await;
    }
    browser.wait_text(&cell("work", "running"), "1").await;
    browser.wait_text(&cell("work", "queued"), "2").await;
    // The chart drew the queue: a point of the queued line above the axis (y < 100).
    browser
        .until("the chart to draw the queue", || async {
            let points = browser
                .run("return document.querySelector(\"figure.chart[data-pool='work'] polyline.s-queued\").getAttribute('points');")
                .await;
            points.as_str().unwrap_or("").split(' ').any(|p| {
                p.split(',').nth(1).and_then(|y| y.parse::<f64>().ok()).is_some_and(|y| y < 99.0)
            })
        })
        .await;
    browser.wait_text(&cell("work", "queued"), "0").await;
    browser.wait_text(&cell("work", "running"), "0").await;
    browser.wait_text("[data-total='completed']", "3").await;
    browser.wait_text("[data-total='in_flight']", "0").await;
    browser.wait_text(&cell("work", "rate"), "0.").await;
    browser.screenshots("overview").await;

    // Flows and triggers: pause the schedule, then resume it.
    browser.click("header.top nav a[href='/ui/flows']").await;
    browser.find("tr[data-flow='spin']").await;
    browser
        .wait_text("tr[data-trigger='yearly'] .state", "active")
        .await;
    browser.click("tr[data-trigger='yearly'] form button").await;
    browser
        .wait_text("tr[data-trigger='yearly'] .state", "paused")
        .await;
    let (_, triggers) = node.get("/v1/triggers").await;
    assert_eq!(triggers[0]["state"], "paused", "{triggers}");
    browser.screenshots("flows").await;
    browser.click("tr[data-trigger='yearly'] form button").await;
    browser
        .wait_text("tr[data-trigger='yearly'] .state", "active")
        .await;

    // The instance list, filtered by flow, links each instance.
    browser.goto("/ui/instances?flow=spin").await;
    browser
        .until("three spins listed", || async {
            browser.count("table.instances tbody tr").await == 3
        })
        .await;
    browser.screenshots("instances").await;
    // Created in the last five minutes: the same three; the API's bounds agree.
    browser.goto("/ui/instances?flow=spin&within=5m").await;
    browser
        .until("three recent spins listed", || async {
            browser.count("table.instances tbody tr").await == 3
        })
        .await;
    let (_, later) = node
        .get("/v1/instances?flow=spin&since=2999-01-01T00:00:00Z")
        .await;
    assert_eq!(
        later["instances"].as_array().map(Vec::len),
        Some(0),
        "{later}"
    );
    let (_, earlier) = node
        .get("/v1/instances?flow=spin&since=2020-01-01T00:00:00Z&until=2999-01-01T00:00:00Z")
        .await;
    assert_eq!(
        earlier["instances"].as_array().map(Vec::len),
        Some(3),
        "{earlier}"
    );
    assert_eq!(node.get("/v1/instances?since=yesterday").await.0, 400);
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flow_started_from_the_form_completes_with_its_output() {
    let dir = tempfile::tempdir().unwrap();
    let node = node(dir.path(), &["hello", "stepper"], "");
    let browser = Browser::open(&node.url).await;
    browser.login(&node.tokens.all).await;
    browser.click("header.top nav a[href='/ui/start']").await;
    browser.find("#start-form").await;
    browser.screenshots("start").await;

    // Not JSON: the browser says so and sends nothing.
    browser
        .find("#flow")
        .await
        .select_by_value("hello")
        .await
        .expect("hello chosen");
    let input = browser.find("#input").await;
    input.clear().await.unwrap();
    input.send_keys("{\"name\": ").await.unwrap();
    browser.click("#start").await;
    browser.wait_text("#input-error", "not JSON").await;
    assert_eq!(browser.path().await, "/ui/start");
    let (_, listed) = node.get("/v1/instances").await;
    assert_eq!(
        listed["instances"].as_array().map(Vec::len),
        Some(0),
        "{listed}"
    );

    input.clear().await.unwrap();
    input.send_keys("{\"name\": \"Ada\"}").await.unwrap();
    browser.click("#start").await;
    browser
        .wait_for_path("the new instance's page", "/ui/instances/")
        .await;
    browser.wait_text("#output", "Hello, Ada!").await;
    browser.wait_text("#status", "completed").await;
    assert_eq!(
        browser.text("#progress .step").await.as_deref(),
        Some("greeting")
    );

    // A slower flow: the page follows it live until it ends.
    browser.goto("/ui/start").await;
    browser
        .find("#flow")
        .await
        .select_by_value("stepper")
        .await
        .expect("stepper chosen");
    let input = browser.find("#input").await;
    input.clear().await.unwrap();
    input
        .send_keys("{\"steps\": 3, \"ms\": 400}")
        .await
        .unwrap();
    browser
        .find("#priority")
        .await
        .select_by_value("high")
        .await
        .unwrap();
    browser.click("#start").await;
    browser
        .wait_for_path("the stepper's page", "/ui/instances/")
        .await;
    browser.wait_text("#output", "\"steps\": 3").await;
    assert_eq!(browser.count("#progress li").await, 3);
    browser
        .assert_no_console_errors("the start form and the instances started")
        .await;
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_page_shows_its_children_as_a_tree_and_its_journal_as_a_timeline() {
    let dir = tempfile::tempdir().unwrap();
    let node = node(dir.path(), &["fanout", "hello"], "");
    let (code, done) = node
        .post(
            "/v1/flows/fanout/start?wait=60s",
            &json!({ "n": 3 }).to_string(),
        )
        .await;
    assert_eq!(code, 200, "{done}");
    let id = done["id"].as_str().unwrap().to_string();

    let browser = Browser::open(&node.url).await;
    browser.login(&node.tokens.all).await;
    browser.goto(&format!("/ui/instances/{id}")).await;
    browser.wait_text("#instance-id", &id).await;
    browser.wait_text("#status", "completed").await;
    browser
        .until("three children in the tree", || async {
            browser.count("#tree li").await == 3
        })
        .await;
    let calls: Vec<Value> = browser
        .run("return Array.from(document.querySelectorAll('ol.timeline li .call')).map(e => e.textContent);")
        .await
        .as_array()
        .cloned()
        .unwrap_or_default();
    let calls: Vec<&str> = calls.iter().filter_map(Value::as_str).collect();
    assert_eq!(
        calls.iter().filter(|c| **c == "start").count(),
        3,
        "{calls:?}"
    );
    assert_eq!(
        calls.iter().filter(|c| **c == "join").count(),
        3,
        "{calls:?}"
    );
    assert!(calls.contains(&"progress"), "{calls:?}");
    // Each call shows when it was made, in the viewer's zone, the exact time on hover.
    let timed = browser
        .run("return Array.from(document.querySelectorAll('ol.timeline li')).filter(li => { const t = li.querySelector('time'); return t && t.title.endsWith('Z (UTC)') && t.textContent.length > 0; }).length;")
        .await;
    assert_eq!(timed, json!(calls.len()), "every entry has its time");
    let progress = browser
        .text("ol.timeline li.c-progress .args")
        .await
        .unwrap_or_default();
    assert!(progress.contains("fanned out"), "{progress}");
    browser.wait_text("#output", "Hello, child-0!").await;
    browser.screenshots("instance").await;

    // A child's page links back to its parent; the link is the stable address.
    browser.click("#tree li a.id").await;
    browser.wait_text("dl.facts", "subflow").await;
    let parent = browser.find("dl.facts a.id").await;
    assert_eq!(parent.text().await.unwrap(), id);
    parent.click().await.unwrap();
    browser
        .wait_for_path("the parent's page", &format!("/ui/instances/{id}"))
        .await;
    browser.screenshots("instance-child-tree").await;
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sleeping_instance_is_cancelled_from_its_page() {
    let dir = tempfile::tempdir().unwrap();
    let node = node(dir.path(), &["sleeper"], "");
    let id = start(&node, "sleeper", json!({ "ms": 600_000 })).await;
    let browser = Browser::open(&node.url).await;
    browser.login(&node.tokens.all).await;
    browser.goto(&format!("/ui/instances/{id}")).await;
    browser.wait_text("#status", "running").await;
    browser.wait_text("ol.timeline", "sleep").await;
    browser.click("form[action$='/cancel'] button").await;
    browser.wait_text("#status", "cancelled").await;
    browser.wait_text("p.notice", "Cancelled").await;
    assert_eq!(status_of(&node, &id).await, "cancelled");
    assert_eq!(
        browser.count("form[action$='/cancel']").await,
        0,
        "no cancel once ended"
    );
    browser
        .assert_no_console_errors("the cancelled instance")
        .await;
    browser.close().await;
}

/// Config for a node where `flaky` holds once its retries run out (until `ready` exists).
pub(crate) fn flaky_config(ready: &std::path::Path) -> String {
    format!(
        "[[flows]]\nname = \"flaky\"\ncomponent = \"{}\"\ndirs = {{ \"/in\" = \"{}:ro\" }}\nretry = {{ attempts = 2, backoff = \"30ms\" }}\n",
        guest("flaky").display(),
        ready.display()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn held_instances_are_retried_and_killed_from_the_hospital() {
    let dir = tempfile::tempdir().unwrap();
    let ready = tempfile::tempdir().unwrap();
    let node = node(dir.path(), &["double"], &flaky_config(ready.path()));
    let retried = start(&node, "flaky", json!({ "x": 21 })).await;
    let killed = start(&node, "flaky", json!({ "x": 1 })).await;
    until_status(&node, &retried, "held").await;
    until_status(&node, &killed, "held").await;

    let browser = Browser::open(&node.url).await;
    browser.login(&node.tokens.all).await;
    browser.click("header.top nav a[href='/ui/hospital']").await;
    browser
        .until("two patients", || async {
            browser.count("li.patient").await == 2
        })
        .await;
    browser
        .wait_text("li.patient pre.reason", "retries exhausted")
        .await;
    browser.screenshots("hospital").await;

    browser
        .click(&format!("form[action='/ui/hospital/{killed}/kill'] button"))
        .await;
    browser.wait_text("p.notice", "Killed").await;
    browser
        .until("one patient", || async {
            browser.count("li.patient").await == 1
        })
        .await;
    assert_eq!(status_of(&node, &killed).await, "failed");

    std::fs::write(ready.path().join("ready"), "").unwrap();
    browser
        .click(&format!(
            "form[action='/ui/hospital/{retried}/retry'] button"
        ))
        .await;
    browser
        .wait_for_path("the retried instance", &format!("/ui/instances/{retried}"))
        .await;
    browser.wait_text("#output", "42").await;
    browser.wait_text("#status", "completed").await;
    browser.goto("/ui/hospital").await;
    browser.wait_text("main", "Nobody is held").await;
    browser.assert_no_console_errors("the hospital").await;
    browser.close().await;
}

/// A node with a schedule trigger, a sleeping instance and one held in the hospital: the
/// node and the two ids.
pub(crate) async fn sleeping_and_held(
    dir: &std::path::Path,
    ready: &std::path::Path,
) -> (Served, String, String) {
    let extra = format!(
        "{}\n[[triggers.schedule]]\nname = \"yearly\"\ncron = \"0 0 1 1 *\"\nflow = \"sleeper\"\n",
        flaky_config(ready)
    );
    let node = node(dir, &["sleeper", "double"], &extra);
    let sleeping = start(&node, "sleeper", json!({ "ms": 600_000 })).await;
    let held = start(&node, "flaky", json!({ "x": 1 })).await;
    until_status(&node, &held, "held").await;
    (node, sleeping, held)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_token_sees_no_buttons() {
    let dir = tempfile::tempdir().unwrap();
    let ready = tempfile::tempdir().unwrap();
    let (node, sleeping, held) = sleeping_and_held(dir.path(), ready.path()).await;

    let browser = Browser::open(&node.url).await;
    browser.login(&node.tokens.read).await;
    assert_eq!(browser.count("header.top nav a[href='/ui/start']").await, 0);
    for page in [
        format!("/ui/instances/{sleeping}"),
        format!("/ui/instances/{held}"),
        "/ui/hospital".to_string(),
        "/ui/flows".to_string(),
    ] {
        browser.goto(&page).await;
        browser.find("main h1").await;
        assert_eq!(browser.count("main form").await, 0, "a form on {page}");
        assert_eq!(browser.count("main button").await, 0, "a button on {page}");
    }
    browser.wait_text("main", "yearly").await;
    browser
        .assert_no_console_errors("the read-only pages")
        .await;
    browser.goto("/ui/start").await;
    browser.wait_text("main", "403").await;
    let logged: Vec<(String, String)> = browser
        .console_log()
        .await
        .into_iter()
        .filter(|(level, _)| level == "SEVERE")
        .collect();
    assert!(
        logged.iter().all(|(_, m)| m.contains("403")),
        "only the refused page's 403 is logged: {logged:?}"
    );

    // Logging out ends the session: the console asks for a token again.
    browser.goto("/ui").await;
    browser.click("form.logout button").await;
    browser
        .wait_for_path("the login page after logout", "/ui/login")
        .await;
    browser.goto("/ui/hospital").await;
    browser
        .wait_for_path("the login page", "/ui/login?next=%2Fui%2Fhospital")
        .await;
    browser.assert_no_console_errors("logout").await;
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn markup_a_flow_writes_is_shown_as_text() {
    const MARKUP: &str =
        "<script>window.__pwned = 1</script><img src=x onerror=\"window.__pwned = 2\"><b>bold</b>";
    let dir = tempfile::tempdir().unwrap();
    let node = node(dir.path(), &["echo"], "");
    let shown = start(
        &node,
        "echo",
        json!({ "step": MARKUP, "output": { "html": MARKUP } }),
    )
    .await;
    let failed = start(&node, "echo", json!({ "step": MARKUP, "fail": MARKUP })).await;
    until_status(&node, &shown, "completed").await;
    until_status(&node, &failed, "failed").await;

    let browser = Browser::open(&node.url).await;
    browser.login(&node.tokens.all).await;
    for id in [&shown, &failed] {
        browser.goto(&format!("/ui/instances/{id}")).await;
        browser.wait_text("#instance-id", id).await;
        assert_eq!(
            browser.text("#progress .step").await.as_deref(),
            Some(MARKUP)
        );
        let ran = browser
            .run("return [typeof window.__pwned, document.querySelectorAll('main img, main b, main script').length];")
            .await;
        assert_eq!(
            ran,
            json!(["undefined", 0]),
            "markup from a flow became elements"
        );
    }
    browser.goto(&format!("/ui/instances/{shown}")).await;
    let output = browser.wait_text("#output", "onerror").await;
    assert!(output.contains("<img src=x"), "{output}");
    browser.goto(&format!("/ui/instances/{failed}")).await;
    let error = browser.wait_text("#error", "<script>").await;
    assert!(error.contains("onerror"), "{error}");
    browser.screenshots("instance-markup").await;
    browser.close().await;
}
