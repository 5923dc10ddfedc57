//! One place that builds nodes and finds guest components for the tests.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;
use sluice::{FlowError, Node, NodeConfig, StartRequest};

/// Where `scripts/build-guests.sh` puts the components (override with `SLUICE_GUESTS`).
pub fn guests_dir() -> PathBuf {
    std::env::var_os("SLUICE_GUESTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../guest-flows/target/wasm32-wasip2/release")
        })
}

/// The built component of guest flow `name`; fails with what to do when it is missing.
pub fn guest(name: &str) -> PathBuf {
    let path = guests_dir().join(format!("{name}.wasm"));
    assert!(
        path.is_file(),
        "guest `{name}` is not built ({}): run scripts/build-guests.sh",
        path.display()
    );
    path
}

/// `[[flows]]` entries registering guest `name` under the same name, tagged to `pool`.
pub fn flow_entry(name: &str, pool: &str) -> String {
    format!(
        "[[flows]]\nname = \"{name}\"\ncomponent = \"{}\"\npool = \"{pool}\"\n",
        guest(name).display()
    )
}

/// Where the tests keep compiled components: a directory of the test suite's own under
/// cargo's target directory, never the user's `~/.cache/sluice`. Tests share it (artifacts
/// are named by content hash and engine, and written atomically), so the large Python and
/// JavaScript components compile once, not once per test; tests about the cache itself use
/// a directory of their own.
pub fn cache_dir() -> PathBuf {
    cache_home().join("sluice")
}

/// The `XDG_CACHE_HOME` of `sluice` processes started by tests: their default cache is then
/// [`cache_dir`].
pub fn cache_home() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("sluice-tests-cache")
}

/// Load guest component `path` for a test in isolation, cached in [`cache_dir`].
pub fn flow_test(path: &Path) -> sluice::testing::FlowTest {
    sluice::testing::FlowTest::load_with_cache(path, Some(cache_dir()))
        .unwrap_or_else(|e| panic!("{} does not load: {e}", path.display()))
}

/// A node from config text; untagged flows resolve from the guests directory, and compiled
/// components are cached in [`cache_dir`] unless the config names another directory.
pub async fn node(config: &str) -> Node {
    let mut config = NodeConfig::parse(config, Path::new("test.toml"), Path::new("."))
        .expect("test config is valid");
    config.node.cache_dir.get_or_insert_with(cache_dir);
    let node = Node::new(&config).await.expect("node starts");
    node.add_search_dir(guests_dir());
    node
}

/// Start `flow` with JSON `input` over RPC and wait for its JSON output.
pub async fn run(node: &Node, flow: &str, input: Value) -> Result<Value, FlowError> {
    let outcome = node
        .run(StartRequest::rpc(
            flow,
            serde_json::to_vec(&input).unwrap(),
            "test",
        ))
        .await
        .unwrap_or_else(|e| panic!("start of {flow} refused: {e}"));
    outcome.map(|bytes| serde_json::from_slice(&bytes).expect("flow output is JSON"))
}

/// Wait until `check` holds, polling the node's own counters; fail after `limit`.
pub async fn until(what: &str, limit: Duration, mut check: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + limit;
    while !check() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// `future`'s output; fails naming `what` when it takes longer than a generous minute.
pub async fn within<F: std::future::IntoFuture>(what: &str, future: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(60), future)
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

/// A Python or JavaScript build (`lang` = "python" | "js") of example flow `name`.
pub fn polyglot(lang: &str, name: &str) -> PathBuf {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(format!("../guest-flows/target/{lang}/{name}.wasm"));
    assert!(
        path.is_file(),
        "{lang} guest `{name}` is not built ({}): run scripts/build-guests.sh",
        path.display()
    );
    path
}

/// Start `count` `spin` flows of `ms` each (in the pool the config tags `spin` to), and wait
/// until `pool` runs `running` instances: the pool is then busy with them.
pub async fn occupy(
    node: &Node,
    pool: &str,
    count: usize,
    ms: u64,
    running: usize,
) -> Vec<sluice::FlowHandle> {
    let pool = node
        .pools()
        .get(pool)
        .unwrap_or_else(|| panic!("no pool {pool}"))
        .clone();
    let mut spins = Vec::with_capacity(count);
    for _ in 0..count {
        let input = serde_json::to_vec(&serde_json::json!({ "ms": ms })).unwrap();
        spins.push(
            node.start(StartRequest::rpc("spin", input, "test"))
                .await
                .expect("spin admitted"),
        );
    }
    until(
        &format!("{running} spins running in {}", pool.name()),
        Duration::from_secs(30),
        || pool.stats().snapshot().running == running,
    )
    .await;
    spins
}
