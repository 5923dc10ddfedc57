//! A node whose database connection is cut stops before its lease can be taken over, and
//! no instance runs on two nodes at once.

use super::*;
use crate::relay::Relay;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partitioned_node_stops_before_its_work_is_taken_over() {
    let db = Database::fresh();
    let (host, rest) = db
        .url
        .strip_prefix("postgres://")
        .and_then(|u| u.split_once('@'))
        .map(|(user, rest)| (user.to_string(), rest.to_string()))
        .expect("a postgres:// URL with a user");
    let (server, database) = rest.split_once('/').expect("a database in the URL");
    let relay = Relay::to(server);
    let cut_url = format!("postgres://{host}@127.0.0.1:{}/{database}", relay.port);
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let n1 = node(dirs[0].path(), &db.url, "n1", "", None);
    let n2 = node(dirs[1].path(), &db.url, "n2", "", None);
    let mut n3 = node(dirs[2].path(), &cut_url, "n3", "", None);
    until_members(&n1, 3).await;
    // Work started on n3 only, its children sleeping 20 × 100 ms each.
    let roots = 100;
    submit(&[&n3], "p", roots, json!({ "ms": 100, "times": 20 })).await;
    until_count(
        &db,
        "SELECT count(*) FROM journal WHERE node = 'n3' AND call = 'sleep'",
        200,
        Duration::from_secs(300),
    );
    relay.cut();
    // n3 cannot renew: it stops by itself, before its lease can lapse.
    let exit = exited(&mut n3, "the partitioned node").await;
    assert_eq!(exit.code(), Some(3), "{exit}");
    let said: Vec<String> = n3.stderr.try_iter().collect();
    assert!(
        said.iter()
            .any(|l| l.contains("lost its place in the cluster")),
        "{}",
        said.join("\n")
    );

    let done = "SELECT count(*) FROM instances WHERE flow = 'fanout' AND status = 'completed'";
    until_count(&db, done, roots as u64, Duration::from_secs(600));
    assert_exactly_once(&db, roots as u64);
    // Taken over by replay, and every entry n3 wrote precedes every entry of the others.
    let both = count(
        &db,
        "SELECT count(*) FROM (SELECT id FROM journal GROUP BY id \
         HAVING bool_or(node = 'n3') AND bool_or(node <> 'n3')) t",
    );
    assert!(both > 0, "nothing of n3 was taken over");
    assert_eq!(
        count(
            &db,
            "SELECT count(*) FROM (SELECT id, max(position) FILTER (WHERE node = 'n3') AS last3, \
             min(position) FILTER (WHERE node <> 'n3') AS first_other FROM journal GROUP BY id) t \
             WHERE last3 > first_other"
        ),
        0,
        "n3 wrote to an instance after another node took it over"
    );
    any_node_answers(&[&n1, &n2], "p-00001").await;
}
