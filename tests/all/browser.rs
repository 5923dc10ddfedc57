//! Headless Chromium for the console's tests, driven over WebDriver by `fantoccini`:
//! chromedriver on a free loopback port, a profile in the test's own temporary directory,
//! waits on what the page shows (never a fixed sleep), the browser's console log, and
//! screenshots of each page at a desktop and a phone width.
//!
//! The browser's console is read through chromedriver's log endpoint
//! (`POST /session/{id}/se/log`, enabled by the `goog:loggingPrefs` capability): it returns
//! what was logged since the last read, at levels `SEVERE` (errors, failed loads, CSP
//! violations, uncaught exceptions), `WARNING`, `INFO`. It sees everything the page logs,
//! from its first byte on, but only in Chromium.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::wd::WebDriverCompatibleCommand;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};

/// Chromium and its driver, from Debian's `chromium` and `chromium-driver` packages.
const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
/// How long a wait on the page lasts before the test fails naming what it waited for.
pub const PATIENCE: Duration = Duration::from_secs(30);

/// Where screenshots go: `target/console-screenshots/` (git-ignored with `target/`).
pub fn screenshots_dir() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .unwrap_or(Path::new(env!("CARGO_TARGET_TMPDIR")))
        .join("console-screenshots")
}

/// One browser: chromedriver, its session, and the console's base URL.
pub struct Browser {
    /// The WebDriver session.
    pub client: Client,
    driver: Child,
    base: String,
    _profile: tempfile::TempDir,
}

#[derive(Debug)]
struct BrowserLog;

impl WebDriverCompatibleCommand for BrowserLog {
    fn endpoint(
        &self,
        base: &url::Url,
        session: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        base.join(&format!("session/{}/se/log", session.unwrap_or_default()))
    }

    fn method_and_body(&self, _: &url::Url) -> (http::Method, Option<String>) {
        (
            http::Method::POST,
            Some(json!({ "type": "browser" }).to_string()),
        )
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

impl Browser {
    /// A headless Chromium pointed at the node served at `base` (`http://127.0.0.1:PORT`).
    pub async fn open(base: &str) -> Browser {
        for tool in [CHROMIUM, CHROMEDRIVER] {
            assert!(
                Path::new(tool).exists(),
                "{tool} is missing: run scripts/test-tools.sh (it installs Debian's chromium and chromium-driver)"
            );
        }
        let profile = tempfile::tempdir().expect("a profile dir");
        let port = free_port();
        // Its own process group: stopping the group stops Chromium with it.
        let driver = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .process_group(0)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let url = format!("http://127.0.0.1:{port}/");
        let deadline = std::time::Instant::now() + PATIENCE;
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "chromedriver never listened on {port}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let capabilities = json!({
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--no-first-run", "--disable-extensions", "--disable-background-networking",
                    "--hide-scrollbars", "--window-size=1280,900",
                    format!("--user-data-dir={}", profile.path().display()),
                ],
            },
            "goog:loggingPrefs": { "browser": "ALL" },
        });
        let Value::Object(capabilities) = capabilities else {
            unreachable!()
        };
        let client = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(capabilities)
            .connect(&url)
            .await
            .expect("a Chromium session");
        Browser {
            client,
            driver,
            base: base.to_string(),
            _profile: profile,
        }
    }

    /// Go to `path` of the console's node.
    pub async fn goto(&self, path: &str) {
        self.client
            .goto(&format!("{}{path}", self.base))
            .await
            .unwrap_or_else(|e| panic!("cannot open {path}: {e}"));
    }

    /// The path (and query) shown now.
    pub async fn path(&self) -> String {
        let url = self.client.current_url().await.expect("a current URL");
        match url.query() {
            Some(q) => format!("{}?{q}", url.path()),
            None => url.path().to_string(),
        }
    }

    /// Log in with `token` from the login page the console sends a browser to.
    pub async fn login(&self, token: &str) {
        self.goto("/ui").await;
        self.wait_for_path("the login page", "/ui/login").await;
        let field = self.find("#token").await;
        field.send_keys(token).await.expect("token typed");
        self.click("section.login button[type=submit]").await;
        self.wait_text("header.top nav", "Overview").await;
    }

    /// The element matching `css` now, waited for.
    pub async fn find(&self, css: &str) -> fantoccini::elements::Element {
        self.until(&format!("an element `{css}`"), || async {
            self.client.find(Locator::Css(css)).await.is_ok()
        })
        .await;
        self.client
            .find(Locator::Css(css))
            .await
            .expect("found just now")
    }

    /// Click the element matching `css`.
    pub async fn click(&self, css: &str) {
        self.find(css)
            .await
            .click()
            .await
            .unwrap_or_else(|e| panic!("cannot click `{css}`: {e}"));
    }

    /// The text of the element matching `css`, if there is one now.
    pub async fn text(&self, css: &str) -> Option<String> {
        let element = self.client.find(Locator::Css(css)).await.ok()?;
        element.text().await.ok()
    }

    /// How many elements match `css` now.
    pub async fn count(&self, css: &str) -> usize {
        self.client
            .find_all(Locator::Css(css))
            .await
            .map(|v| v.len())
            .unwrap_or(0)
    }

    /// Wait until `check` holds; fail after [`PATIENCE`] naming `what`, the page and its text.
    pub async fn until<F, Fut>(&self, what: &str, mut check: F)
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        while !check().await {
            if tokio::time::Instant::now() >= deadline {
                let path = self.path().await;
                let shown = self.text("body").await.unwrap_or_default();
                panic!("timed out waiting for {what} on {path}; the page shows:\n{shown}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Wait until the element matching `css` shows `want` in its text; returns the text.
    pub async fn wait_text(&self, css: &str, want: &str) -> String {
        self.until(&format!("`{css}` to show {want:?}"), || async {
            self.text(css).await.is_some_and(|t| t.contains(want))
        })
        .await;
        self.text(css).await.unwrap_or_default()
    }

    /// Wait until the browser shows a path starting with `prefix`.
    pub async fn wait_for_path(&self, what: &str, prefix: &str) {
        self.until(&format!("{what} ({prefix})"), || async {
            self.path().await.starts_with(prefix)
        })
        .await;
    }

    /// Run `script` in the page and return its value.
    pub async fn run(&self, script: &str) -> Value {
        self.client
            .execute(script, vec![])
            .await
            .unwrap_or_else(|e| panic!("{script}: {e}"))
    }

    /// What the browser's console logged since the last read: `(level, message)`.
    pub async fn console_log(&self) -> Vec<(String, String)> {
        let entries = self
            .client
            .issue_cmd(BrowserLog)
            .await
            .expect("the browser log");
        entries
            .as_array()
            .map(|entries| {
                entries
                    .iter()
                    .map(|e| {
                        let field =
                            |k: &str| e.get(k).and_then(Value::as_str).unwrap_or("").to_string();
                        (field("level"), field("message"))
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Fail if the browser's console logged an error since the last read.
    pub async fn assert_no_console_errors(&self, page: &str) {
        let errors: Vec<String> = self
            .console_log()
            .await
            .into_iter()
            .filter(|(level, _)| level == "SEVERE")
            .map(|(_, message)| message)
            .collect();
        assert!(
            errors.is_empty(),
            "the browser logged errors on {page}:\n{}",
            errors.join("\n")
        );
    }

    /// Screenshots of the page shown, whole, at 1280 px and at 390 px wide, written as
    /// `target/console-screenshots/<name>-1280.png` and `…-390.png`; the console must have
    /// logged no error meanwhile.
    pub async fn screenshots(&self, name: &str) {
        let dir = screenshots_dir();
        std::fs::create_dir_all(&dir).expect("the screenshots dir");
        for width in [1280u32, 390] {
            self.client
                .set_window_size(width, 900)
                .await
                .expect("window resized");
            let height = self
                .run("return Math.max(document.documentElement.scrollHeight, document.body.scrollHeight);")
                .await
                .as_u64()
                .unwrap_or(900)
                .clamp(400, 4000) as u32;
            self.client
                .set_window_size(width, height + 100)
                .await
                .expect("window resized");
            let png = self.client.screenshot().await.expect("a screenshot");
            std::fs::write(dir.join(format!("{name}-{width}.png")), png)
                .expect("screenshot written");
        }
        self.client
            .set_window_size(1280, 900)
            .await
            .expect("window resized");
        self.assert_no_console_errors(name).await;
    }

    /// End the session and chromedriver.
    pub async fn close(self) {
        let _ = self.client.clone().close().await;
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // A failed test still stops its chromedriver and Chromium: the whole process group.
        if let Ok(pid) = i32::try_from(self.driver.id()) {
            // SAFETY: kill(2) on the group this test started; no memory is shared.
            unsafe { libc::kill(-pid, libc::SIGKILL) };
        }
        let _ = self.driver.wait();
    }
}
