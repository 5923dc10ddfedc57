//! A PostgreSQL database of its own for each test, on the server at `SLUICE_TEST_POSTGRES`
//! (default `postgres://postgres@127.0.0.1:5432/postgres`, the project machines' server).

use std::path::Path;

use sluice::store::PostgresStore;

/// Run `sql` on the server at `url`, off any runtime (the sync client makes its own).
pub fn execute(url: &str, sql: &str) -> Result<(), String> {
    let (url, sql) = (url.to_string(), sql.to_string());
    std::thread::spawn(move || {
        let mut client = postgres::Client::connect(&url, postgres::NoTls).map_err(|e| {
            format!(
                "cannot reach the test PostgreSQL at {url}: {e} (set SLUICE_TEST_POSTGRES \
                 to a server tests may create databases on)"
            )
        })?;
        client
            .batch_execute(&sql)
            .map_err(|e| format!("{sql}: {e}"))
    })
    .join()
    .expect("the SQL thread ends")
}

/// Rows of `sql` (text columns) on the server at `url`.
pub fn query(url: &str, sql: &str) -> Vec<Vec<Option<String>>> {
    let (url, sql) = (url.to_string(), sql.to_string());
    std::thread::spawn(move || {
        let mut c = postgres::Client::connect(&url, postgres::NoTls).expect("the test database");
        c.simple_query(&sql)
            .expect("the query runs")
            .into_iter()
            .filter_map(|m| match m {
                postgres::SimpleQueryMessage::Row(row) => Some(
                    (0..row.len())
                        .map(|i| row.get(i).map(str::to_string))
                        .collect(),
                ),
                _ => None,
            })
            .collect()
    })
    .join()
    .expect("the SQL thread ends")
}

/// A database made for one test on the test server, dropped with its connections after.
pub struct Database {
    /// Its URL.
    pub url: String,
    name: String,
    admin: String,
}

impl Database {
    /// A new, empty database.
    pub fn fresh() -> Self {
        let admin = std::env::var("SLUICE_TEST_POSTGRES")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
        let name = format!("sluice_it_{}", ulid::Ulid::new().to_string().to_lowercase());
        execute(&admin, &format!("CREATE DATABASE {name}")).unwrap();
        let base = admin.rsplit_once('/').expect("a URL with a database").0;
        Database {
            url: format!("{base}/{name}"),
            name,
            admin,
        }
    }

    /// The database read back without holding it (the node may be writing).
    pub fn store(&self) -> PostgresStore {
        PostgresStore::connect(&self.url).expect("the test database opens")
    }

    /// A node config keeping instances in this database.
    pub fn config(&self, dir: &Path) -> String {
        let path = dir.join("node.toml");
        std::fs::write(&path, format!("[store]\nurl = \"{}\"\n", self.url)).unwrap();
        path.display().to_string()
    }
}

impl Drop for Database {
    fn drop(&mut self) {
        let _ = execute(
            &self.admin,
            &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
        );
    }
}

impl Database {
    /// Instances recorded, read with plain SQL (the store itself refuses a newer schema).
    pub fn store_unchecked_count(&self) -> i64 {
        let url = self.url.clone();
        std::thread::spawn(move || {
            let mut c = postgres::Client::connect(&url, postgres::NoTls).unwrap();
            c.query_one("SELECT COUNT(*) FROM instances", &[])
                .unwrap()
                .get(0)
        })
        .join()
        .unwrap()
    }
}
