//! (K) Several nodes on one PostgreSQL database: W1 and W2 through the API of one, two and
//! three served nodes (each its own process, clients spread over them), against one node on
//! SQLite; then the takeover of a SIGKILLed node's parked instances.

use std::path::Path;
use std::time::{Duration, Instant};

use super::api::{ServedNode, Workloads, serve, warm_up, workloads};
use super::durable::scratch_dir;

/// The lease of the benchmark's nodes.
const LEASE_SECS: u64 = 5;

/// What the cluster run measured.
#[derive(Debug, Clone)]
pub struct ClusterFigures {
    /// W1/W2 by setup: `sqlite ×1`, `postgres ×1`, `×2`, `×3`.
    pub setups: Vec<(String, Workloads)>,
    /// Parked instances the killed node owned.
    pub orphans: u64,
    /// From the SIGKILL until every one of them is owned by a live node and resumed.
    pub takeover: Duration,
    /// The lease (the takeover cannot start before it lapses).
    pub lease: Duration,
}

/// A database made for the run on the server at `admin`, dropped after.
struct BenchDatabase {
    admin: String,
    name: String,
    url: String,
}

impl BenchDatabase {
    fn create(admin: &str) -> anyhow::Result<Self> {
        let name = format!(
            "sluice_bench_{}",
            ulid::Ulid::new().to_string().to_lowercase()
        );
        sql(admin, &format!("CREATE DATABASE {name}"))?;
        let base = admin
            .rsplit_once('/')
            .map(|(base, _)| base)
            .ok_or_else(|| anyhow::anyhow!("{admin}: no database in the URL"))?;
        Ok(BenchDatabase {
            admin: admin.to_string(),
            url: format!("{base}/{name}"),
            name,
        })
    }

    fn count(&self, query: &str) -> anyhow::Result<i64> {
        let (url, query) = (self.url.clone(), query.to_string());
        std::thread::spawn(move || -> anyhow::Result<i64> {
            let mut c = postgres::Client::connect(&url, postgres::NoTls)?;
            Ok(c.query_one(&query, &[])?.get(0))
        })
        .join()
        .map_err(|_| anyhow::anyhow!("the SQL thread panicked"))?
    }
}

impl Drop for BenchDatabase {
    fn drop(&mut self) {
        let _ = sql(
            &self.admin,
            &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
        );
    }
}

/// Run `statement` on the server at `url`, on a thread of its own (the client may not run
/// inside a tokio runtime).
fn sql(url: &str, statement: &str) -> anyhow::Result<()> {
    let (url, statement) = (url.to_string(), statement.to_string());
    std::thread::spawn(move || -> anyhow::Result<()> {
        let mut c = postgres::Client::connect(&url, postgres::NoTls).map_err(|e| {
            anyhow::anyhow!(
                "cannot reach PostgreSQL at {} ({e}); give --postgres",
                sluice::model::urls::without_password(&url)
            )
        })?;
        c.batch_execute(&statement)?;
        Ok(())
    })
    .join()
    .map_err(|_| anyhow::anyhow!("the SQL thread panicked"))?
}

/// `n` served nodes named `n1`… on `db` (or one on SQLite when `db` is `None`).
fn nodes(
    exe: &Path,
    guests: &Path,
    db: Option<&BenchDatabase>,
    n: usize,
    hash: &str,
) -> anyhow::Result<Vec<ServedNode>> {
    (1..=n)
        .map(|i| {
            let dir = scratch_dir(&format!("cluster-{}-{i}", db.map_or("sqlite", |_| "pg")));
            let extra = match db {
                Some(db) => format!(
                    "[store]\nurl = \"{}\"\n[cluster]\nname = \"n{i}\"\nlease = \"{LEASE_SECS}s\"\n",
                    db.url
                ),
                None => String::new(),
            };
            serve(exe, guests, &dir, hash, &extra)
        })
        .collect()
}

/// Measure W1/W2 on SQLite and on 1–3 PostgreSQL nodes, then a takeover.
pub async fn cluster(
    exe: &Path,
    guests: &Path,
    admin: &str,
    iterations: usize,
    clients: usize,
    parked: u64,
) -> anyhow::Result<ClusterFigures> {
    let (token, hash) = sluice::api::new_token();
    let mut setups = Vec::new();
    for (label, n, on_pg) in [
        ("sqlite ×1", 1, false),
        ("postgres ×1", 1, true),
        ("postgres ×2", 2, true),
        ("postgres ×3", 3, true),
    ] {
        let db = if on_pg {
            Some(BenchDatabase::create(admin)?)
        } else {
            None
        };
        let served = nodes(exe, guests, db.as_ref(), n, &hash)?;
        let urls: Vec<String> = served.iter().map(|s| s.url.clone()).collect();
        let client = warm_up(&urls, &token).await?;
        let w = workloads(&client, &urls, &token, iterations, clients).await?;
        setups.push((label.to_string(), w));
        drop(served);
    }

    // Takeover: `parked` sleepers parked on n3, which is then killed.
    let db = BenchDatabase::create(admin)?;
    let mut served = nodes(exe, guests, Some(&db), 3, &hash)?;
    let client = reqwest::Client::new();
    let victim = &served[2];
    for i in 0..parked {
        let answer = client
            .post(format!("{}/v1/flows/sleeper/start?id=nap-{i}", victim.url))
            .bearer_auth(&token)
            .header("content-type", "application/json")
            .body(r#"{"ms":3600000}"#)
            .send()
            .await?;
        anyhow::ensure!(
            answer.status().is_success(),
            "start nap-{i}: {}",
            answer.status()
        );
    }
    let parked_sql = "SELECT count(*) FROM journal WHERE node = 'n3' AND call = 'sleep'";
    let deadline = Instant::now() + Duration::from_secs(600);
    while db.count(parked_sql)? < parked as i64 {
        anyhow::ensure!(Instant::now() < deadline, "the sleepers never all parked");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let killed = served
        .pop()
        .ok_or_else(|| anyhow::anyhow!("no third node"))?;
    let t = Instant::now();
    drop(killed); // SIGKILL
    let left = "SELECT count(*) FROM instances WHERE status = 'running' AND owner = 'n3'";
    let deadline = Instant::now() + Duration::from_secs(600);
    while db.count(left)? > 0 {
        anyhow::ensure!(Instant::now() < deadline, "the takeover never ended");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let takeover = t.elapsed();
    let resumed = db.count(
        "SELECT count(*) FROM instances WHERE status = 'running' AND owner IN ('n1', 'n2')",
    )?;
    anyhow::ensure!(
        resumed == parked as i64,
        "{resumed} of {parked} sleepers taken over"
    );
    drop(served);
    Ok(ClusterFigures {
        setups,
        orphans: parked,
        takeover,
        lease: Duration::from_secs(LEASE_SECS),
    })
}
