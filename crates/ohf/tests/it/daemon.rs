//! `ohf serve` daemons on one Postgres: shared work, SIGKILL takeover, clean SIGTERM.

use std::collections::HashMap;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ohf_app::{CloudProvider, DescribeQuery, Requests, SystemClock, WorkClaims};
use ohf_cloud_sim::{SimCloud, SimConfig};
use ohf_domain::{ProviderName, Request, RequestId, RequestState};
use ohf_store_sql::PostgresStore;
use serde_json::Value;

use crate::support::{Daemon, HfEnv};

fn postgres_url() -> String {
    std::env::var("OHF_TEST_DATABASE_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

/// A provider instance on Postgres (its own schema) and a shared simulated cloud.
struct Cluster {
    env: HfEnv,
    schema: String,
    daemons: Vec<Child>,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for d in &mut self.daemons {
            let _ = d.kill();
            let _ = d.wait();
        }
        let schema = self.schema.clone();
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async {
                if let Ok(pool) = sqlx::PgPool::connect(&postgres_url()).await {
                    let _ = sqlx::query(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE")).execute(&pool).await;
                }
            });
        })
        .join();
    }
}

impl Cluster {
    /// `sim` is the simulated provider's settings, one `key = value` a line.
    fn new(sim: &str, claim_ttl_secs: u64) -> Self {
        let schema = format!("ohf_test_{}", uuid::Uuid::new_v4().simple());
        let toml = format!(
            "database_url = \"{url}\"\ndatabase_schema = \"{schema}\"\nadvance_on_poll = false\n\
             [serve]\ninterval_ms = 100\nclaim_ttl_secs = {claim_ttl_secs}\nbatch = 40\nshutdown_grace_secs = 20\nsweep_interval_secs = 0\n\
             [request]\nmax_launch_attempts = 20\nlaunch_backoff_base_secs = 1\nlaunch_backoff_max_secs = 2\n\
             [[providers]]\nname = \"sim-1\"\ntype = \"sim\"\nshutdown_latency_ms = 300\n{sim}",
            url = postgres_url()
        );
        Self { env: HfEnv::new(&toml), schema, daemons: Vec::new() }
    }

    fn logs(&self) -> String {
        let mut all = String::new();
        for e in std::fs::read_dir(self.env.path("log")).unwrap().flatten() {
            all += &format!("--- {}\n{}", e.path().display(), std::fs::read_to_string(e.path()).unwrap_or_default());
        }
        all
    }

    fn start_daemon(&mut self, worker: &str) -> usize {
        let log = std::fs::File::create(self.env.path(&format!("log/{worker}.log"))).unwrap();
        let child = self
            .env
            .ohf()
            .args(["serve", "--listen", "127.0.0.1:0", "--worker-id", worker])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.daemons.push(child);
        self.daemons.len() - 1
    }

    /// Creates `n` requests of `count` machines through the CLI, several processes at a time.
    fn create(&self, n: usize, count: u32) -> Vec<String> {
        let mut ids = Vec::new();
        for chunk in (0..n).collect::<Vec<_>>().chunks(8) {
            let children: Vec<_> = chunk
                .iter()
                .map(|_| {
                    self.env
                        .ohf()
                        .args(["request", "create", "-t", "Spot-Compute", "-n", &count.to_string(), "-o", "json"])
                        .stdout(Stdio::piped())
                        .stderr(Stdio::piped())
                        .spawn()
                        .unwrap()
                })
                .collect();
            for c in children {
                let out = c.wait_with_output().unwrap();
                let shown = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
                assert!(out.status.success(), "{shown}");
                let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
                ids.push(doc["requestId"].as_str().unwrap().to_owned());
            }
        }
        ids
    }

    async fn store(&self) -> PostgresStore {
        PostgresStore::open(&postgres_url(), Some(&self.schema), 2).await.expect("postgres; run `cargo xtask test`")
    }

    fn sim(&self) -> SimCloud {
        SimCloud::persistent(
            ProviderName::new("sim-1").unwrap(),
            SimConfig::default(),
            Arc::new(SystemClock),
            self.env.path("work/sim-sim-1.json"),
        )
    }
}

async fn load(store: &PostgresStore, ids: &[String]) -> Vec<Request> {
    let ids: Vec<RequestId> = ids.iter().map(|i| RequestId::new(i.clone()).unwrap()).collect();
    store.get_many(&ids).await.unwrap()
}

async fn wait_all(
    cluster: &Cluster,
    store: &PostgresStore,
    ids: &[String],
    done: usize,
    within: Duration,
) -> Vec<Request> {
    let deadline = Instant::now() + within;
    loop {
        let all = load(store, ids).await;
        let finished = all.iter().filter(|r| r.state() == RequestState::Completed).count();
        if finished >= done {
            return all;
        }
        assert!(Instant::now() < deadline, "only {finished} of {done} requests completed\n{}", cluster.logs());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_daemons_share_the_work_and_survive_a_sigkill() {
    let mut cluster = Cluster::new("launch_latency_ms = 1000\nthrottle_rate = 0.2\napi_latency_ms = 5\n", 3);
    cluster.start_daemon("daemon-a");
    cluster.start_daemon("daemon-b");
    let ids = cluster.create(200, 2);
    let store = cluster.store().await;
    wait_all(&cluster, &store, &ids, 60, Duration::from_secs(60)).await;
    let a = &mut cluster.daemons[0];
    a.kill().unwrap(); // SIGKILL: no chance to release its claims
    a.wait().unwrap();
    let all = wait_all(&cluster, &store, &ids, ids.len(), Duration::from_secs(120)).await;

    let sim = cluster.sim();
    let request_ids: Vec<RequestId> = all.iter().map(|r| r.id().clone()).collect();
    let in_cloud = sim.describe(&DescribeQuery { request_ids, ..Default::default() }).await.unwrap();
    let mut per_request: HashMap<String, usize> = HashMap::new();
    for o in &in_cloud {
        *per_request.entry(o.request_id.as_ref().unwrap().to_string()).or_default() += 1;
    }
    let mut workers_seen = std::collections::HashSet::new();
    for r in &all {
        assert_eq!(r.machines().len(), 2, "{}: exactly its machine count", r.id());
        assert_eq!(per_request.get(r.id().as_str()), Some(&2), "{}: no machine launched twice", r.id());
        let spans = store.claim_history(r.id()).await.unwrap();
        for (i, x) in spans.iter().enumerate() {
            workers_seen.insert(x.worker.clone());
            for y in &spans[i + 1..] {
                let overlap = x.since < y.until && y.since < x.until;
                assert!(
                    x.worker == y.worker || !overlap,
                    "{}: worked by {} and {} at once",
                    r.id(),
                    x.worker,
                    y.worker
                );
            }
        }
    }
    assert!(workers_seen.contains("daemon-a") && workers_seen.contains("daemon-b"), "both daemons took part");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_mid_cycle_leaves_no_partial_state() {
    // Slow answers keep the worker inside a cycle most of the time.
    let mut cluster = Cluster::new("api_latency_ms = 300\nlaunch_latency_ms = 2500\n", 30);
    let d = cluster.start_daemon("daemon-t");
    let ids = cluster.create(20, 3);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let pid = cluster.daemons[d].id();
    let status = Command::new("kill").args(["-TERM", &pid.to_string()]).status().unwrap();
    assert!(status.success());
    let started = Instant::now();
    let exit = loop {
        if let Some(s) = cluster.daemons[d].try_wait().unwrap() {
            break s;
        }
        assert!(started.elapsed() < Duration::from_secs(25), "the daemon did not stop");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(exit.success(), "a clean stop exits 0: {exit}\n{}", cluster.logs());
    let log = std::fs::read_to_string(cluster.env.path("log/daemon-t.log")).unwrap();
    assert!(log.contains("stopping") && log.contains("worker stopped"), "{log}");

    let store = cluster.store().await;
    let stored = load(&store, &ids).await;
    assert_eq!(stored.len(), 20);
    for r in &stored {
        let history = store.history(r.id()).await.unwrap();
        let replayed = Request::replay(&history).unwrap();
        assert_eq!(
            (replayed.state(), replayed.machines(), replayed.seq()),
            (r.state(), r.machines(), r.seq()),
            "{}: the stored request is its history",
            r.id()
        );
    }
    let now = ohf_app::Clock::now(&SystemClock);
    let free = store.claim("someone-else", now, 1000, 100).await.unwrap();
    let unfinished = stored.iter().filter(|r| r.needs_work()).count();
    assert_eq!(free.len(), unfinished, "the stopped daemon released its claims");
    store.release("someone-else", &free.iter().map(|r| r.id().clone()).collect::<Vec<_>>(), now).await.unwrap();

    cluster.start_daemon("daemon-u");
    let all = wait_all(&cluster, &store, &ids, ids.len(), Duration::from_secs(60)).await;
    assert!(all.iter().all(|r| r.machines().len() == 3));
}

/// POST /rpc over a plain socket; (HTTP status, JSON body).
fn rpc(port: u16, method: &str, params: Value) -> (u16, Value) {
    use std::io::{Read, Write};
    let body = serde_json::json!({"method": method, "params": params}).to_string();
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(s, "POST /rpc HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len()).unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    let status = answer.split_whitespace().nth(1).unwrap().parse().unwrap();
    let json = answer.split("\r\n\r\n").nth(1).unwrap();
    (status, serde_json::from_str(json).unwrap_or(Value::Null))
}

#[test]
fn the_daemon_serves_the_http_api_and_advances_what_it_accepts() {
    let env = HfEnv::new(
        "advance_on_poll = false\n[serve]\ninterval_ms = 100\n[[providers]]\nname = \"sim-1\"\ntype = \"sim\"\nlaunch_latency_ms = 300\n",
    );
    let daemon = Daemon::start(&env);
    let port = daemon.port;
    let deadline = Instant::now() + Duration::from_secs(20);
    let (status, v) =
        rpc(port, "requestMachines", serde_json::json!({"templateId": "OnDemand-Minimal", "machineCount": 2}));
    assert_eq!(status, 200, "{v}");
    let id = v["result"]["requestId"].as_str().unwrap().to_owned();
    let done = loop {
        let (_, v) = rpc(port, "getRequestStatus", serde_json::json!({"requestId": id}));
        if v["result"]["status"] == "COMPLETED" {
            break v;
        }
        assert!(Instant::now() < deadline, "the daemon never completed {id}: {v}");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(done["result"]["machines"].as_array().unwrap().len(), 2);
    let (status, v) = rpc(port, "requestMachines", serde_json::json!({"templateId": "Missing", "machineCount": 1}));
    assert_eq!((status, v["error"]["code"].as_str()), (404, Some("TEMPLATE_NOT_FOUND")));
    assert!(daemon.stop().success());
}

/// A raw HTTP/1.1 call: (status, headers and body as text).
fn raw_http(port: u16, request_line: &str, headers: &str, body: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    // The server may answer (and close) before it has read a body it refuses.
    let _ = write!(
        s,
        "{request_line}\r\nHost: localhost\r\n{headers}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let mut answer = Vec::new();
    let _ = s.read_to_end(&mut answer);
    let answer = String::from_utf8_lossy(&answer).into_owned();
    (answer.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0), answer)
}

/// Paths that are no route answer a plain 404 in the API's error shape, never a 200 with a gRPC
/// status; a gRPC call to an unknown method keeps gRPC's UNIMPLEMENTED; lists past their cap
/// and bodies past theirs are refused with what the limit is.
#[test]
fn unknown_paths_and_oversized_input_get_plain_refusals() {
    let env = HfEnv::new("[[providers]]\nname = \"sim-1\"\ntype = \"sim\"\nlaunch_latency_ms = 0\n");
    let daemon = Daemon::start(&env);
    for line in ["GET /nothing-here HTTP/1.1", "POST /routing-requestz HTTP/1.1", "GET /rpcx HTTP/1.1"] {
        let (status, answer) = raw_http(daemon.port, line, "Content-Type: application/json\r\n", "{}");
        assert_eq!(status, 404, "{line}: {answer}");
        assert!(!answer.contains("grpc-status"), "{line}: {answer}");
        let body: Value = serde_json::from_str(answer.split("\r\n\r\n").nth(1).unwrap()).unwrap();
        assert_eq!(body["error"]["code"], "NOT_FOUND", "{line}: {body}");
    }
    let (status, answer) =
        raw_http(daemon.port, "POST /ohf.v1.Nothing/Nowhere HTTP/1.1", "Content-Type: application/grpc\r\n", "");
    assert_eq!(status, 200, "{answer}");
    assert!(answer.to_ascii_lowercase().contains("grpc-status: 12"), "gRPC keeps UNIMPLEMENTED: {answer}");

    let many: Vec<String> = (0..70_000).map(|i| format!("req-{i}")).collect();
    let (status, v) = rpc(daemon.port, "getRequestStatus", serde_json::json!({"requestIds": many}));
    assert_eq!((status, v["error"]["code"].as_str()), (400, Some("VALIDATION_ERROR")), "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("10000"), "the limit is named: {v}");
    let huge = "x".repeat(2 << 20);
    let (status, _) = raw_http(daemon.port, "POST /rpc HTTP/1.1", "Content-Type: application/json\r\n", &huge);
    assert_eq!(status, 413, "a body past 1 MiB is refused");
    let tags: serde_json::Map<String, Value> = (0..43).map(|i| (format!("k{i}"), Value::from("v"))).collect();
    let (status, v) = rpc(
        daemon.port,
        "requestMachines",
        serde_json::json!({"templateId": "OnDemand-Minimal", "machineCount": 1, "tags": tags}),
    );
    assert_eq!((status, v["error"]["details"]["field"].as_str()), (400, Some("tags")), "{v}");
    assert!(daemon.stop().success());
}

/// Daemons on hosts whose clocks disagree judge claims by the database's clock: a daemon ten
/// minutes behind stamps its claim in Postgres time, so a daemon with the right time does not
/// take a request that is still being worked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claims_are_judged_by_the_databases_clock() {
    use ohf_app::memory::{ManualClock, SequentialIds, StaticCatalog};
    use ohf_app::{App, AppSettings, Clock, EventBus, RequestMachines, SweepOptions, Worker, WorkerConfig};
    let schema = format!("ohf_test_{}", uuid::Uuid::new_v4().simple());
    let store = Arc::new(PostgresStore::open(&postgres_url(), Some(&schema), 4).await.unwrap());
    let real = SystemClock.now();
    let behind = Arc::new(ManualClock::new(real.plus_secs(-600)));
    let slow = SimConfig { api_latency_ms: 30_000, launch_latency_ms: 0, ..SimConfig::default() };
    let sim = Arc::new(SimCloud::in_memory(ProviderName::new("sim-1").unwrap(), slow, behind.clone()));
    let settings = AppSettings { answer_within: Duration::from_millis(100), ..AppSettings::default() };
    let app = Arc::new(
        App::builder(store.clone(), Arc::new(StaticCatalog(crate::support::templates())))
            .provider(sim as Arc<dyn CloudProvider>)
            .clock(behind.clone())
            .ids(Arc::new(SequentialIds::default()))
            .bus(EventBus::default())
            .settings(settings)
            .build()
            .unwrap(),
    );
    let ask = RequestMachines { template_id: "OnDemand-Minimal".into(), count: 1, ..Default::default() };
    let r = app.execute(ask).await.unwrap();
    let config = WorkerConfig {
        id: "behind".into(),
        interval: Duration::from_secs(60),
        claim_ttl: Duration::from_secs(30),
        batch: 10,
        sweep_interval: None,
        sweep: SweepOptions::default(),
        retention_days: None,
    };
    let worker = Arc::new(Worker::new(app.clone(), config));
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let running = worker.spawn(stopped);
    let deadline = Instant::now() + Duration::from_secs(10);
    while store.claim_history(r.id()).await.unwrap().is_empty() {
        assert!(Instant::now() < deadline, "the worker never claimed the request");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let taken = store.claim("right-on-time", SystemClock.now(), 30_000, 10).await.unwrap();
    assert!(taken.is_empty(), "a claim stamped in the database's time holds: {taken:?}");
    let _ = stop.send(true);
    running.abort();
    if let Ok(pool) = sqlx::PgPool::connect(&postgres_url()).await {
        let _ = sqlx::query(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE")).execute(&pool).await;
    }
}

/// Starts `n` CLI processes at once, each asking for `count` machines of OnDemand-Minimal
/// (`maxNumber` 10); the JSON each printed, and whether it succeeded.
fn race_for_max_number(env: &HfEnv, n: usize, count: u32) -> Vec<(bool, Value)> {
    let children: Vec<_> = (0..n)
        .map(|_| {
            env.ohf()
                .args(["request", "create", "-t", "OnDemand-Minimal", "-n", &count.to_string(), "-o", "json"])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    children
        .into_iter()
        .map(|c| {
            let out = c.wait_with_output().unwrap();
            let doc = serde_json::from_slice(&out.stdout).unwrap_or_else(|_| {
                let shown = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
                Value::String(shown)
            });
            (out.status.success(), doc)
        })
        .collect()
}

fn assert_max_number_held(results: &[(bool, Value)]) {
    let accepted = results.iter().filter(|(ok, _)| *ok).count();
    assert_eq!(accepted, 5, "5 × 2 machines fill maxNumber 10 exactly: {results:#?}");
    for (_, doc) in results.iter().filter(|(ok, _)| !ok) {
        assert!(doc.to_string().contains("INSUFFICIENT_CAPACITY"), "a refusal names the code: {doc}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_creations_on_postgres_never_exceed_max_number() {
    let cluster = Cluster::new("", 30);
    let results = race_for_max_number(&cluster.env, 12, 2);
    assert_max_number_held(&results);
    let store = cluster.store().await;
    let held = ohf_app::Requests::capacity_held(&store).await.unwrap();
    assert_eq!(held.values().sum::<u32>(), 10, "{held:?}");
}

#[test]
fn concurrent_creations_on_sqlite_never_exceed_max_number() {
    let env = HfEnv::new("[[providers]]\nname = \"sim-1\"\ntype = \"sim\"\n");
    let results = race_for_max_number(&env, 12, 2);
    assert_max_number_held(&results);
    let held: u64 = env.stored_requests().iter().map(|r| r["machineCount"].as_u64().unwrap_or(0)).sum();
    assert_eq!(held, 10, "only the accepted requests are stored");
}

#[test]
fn callbacks_are_posted_signed_retried_and_recorded_in_the_history() {
    // The receiver fails the first post; the second, 5 s later, is taken.
    let receiver = crate::support::Receiver::start(vec![500, 200]);
    let env = HfEnv::new(
        "advance_on_poll = false\n[callbacks]\nsecret = \"s3cret\"\n[serve]\ninterval_ms = 100\n\
         [[providers]]\nname = \"sim-1\"\ntype = \"sim\"\nlaunch_latency_ms = 200\n",
    );
    let daemon = Daemon::start(&env);
    let metadata = serde_json::json!({"callback_url": receiver.url, "callback_events": ["completed"]});
    let (status, v) = rpc(
        daemon.port,
        "requestMachines",
        serde_json::json!({"templateId": "OnDemand-Minimal", "machineCount": 1, "metadata": metadata}),
    );
    assert_eq!(status, 200, "{v}");
    let id = v["result"]["requestId"].as_str().unwrap().to_owned();

    let hits = receiver.wait_for(2, Duration::from_secs(40));
    assert_eq!(hits.len(), 2, "one failed post, one taken: {hits:?}");
    for hit in &hits {
        assert_eq!(hit.headers["x-ohf-event"], "COMPLETED");
        let doc = hit.json();
        assert_eq!(
            (doc["event"].as_str(), doc["request"]["requestId"].as_str()),
            (Some("COMPLETED"), Some(id.as_str()))
        );
        assert_eq!(doc["request"]["status"], "COMPLETED", "{doc}");
        let expected = ohf_server::callbacks::signature("s3cret", &hit.body).unwrap();
        assert_eq!(hit.headers["x-ohf-signature"], expected, "signed over the exact body");
    }

    // Both tries are in the request's history.
    let deadline = Instant::now() + Duration::from_secs(10);
    let kinds = loop {
        let (_, h) = rpc(daemon.port, "getRequestHistory", serde_json::json!({"requestId": id}));
        let kinds: Vec<String> = h["result"]["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["event"]["type"].as_str().unwrap().to_owned())
            .collect();
        if kinds.iter().any(|k| k == "callback_delivered") || Instant::now() > deadline {
            break kinds;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let failed = kinds.iter().position(|k| k == "callback_failed");
    let delivered = kinds.iter().position(|k| k == "callback_delivered");
    assert!(failed.is_some() && failed < delivered, "{kinds:?}");
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(receiver.hits().len(), 2, "a delivered callback is not posted again");
}

#[test]
fn a_callback_url_that_cannot_be_posted_to_is_refused_at_creation() {
    let env = HfEnv::new("[[providers]]\nname = \"sim-1\"\ntype = \"sim\"\n");
    let daemon = Daemon::start(&env);
    for (metadata, field) in [
        (serde_json::json!({"callback_url": "ftp://example.com/hook"}), "metadata.callback_url"),
        (serde_json::json!({"callback_url": 7}), "metadata.callback_url"),
        (
            serde_json::json!({"callback_url": "http://127.0.0.1:9/h", "callback_events": ["DONE"]}),
            "metadata.callback_events",
        ),
        (
            serde_json::json!({"callback_url": "http://127.0.0.1:9/h", "callback_events": "COMPLETED"}),
            "metadata.callback_events",
        ),
    ] {
        let (status, v) = rpc(
            daemon.port,
            "requestMachines",
            serde_json::json!({"templateId": "OnDemand-Minimal", "machineCount": 1, "metadata": metadata}),
        );
        assert_eq!(status, 400, "{v}");
        assert_eq!(v["error"]["code"], "VALIDATION_ERROR");
        assert_eq!(v["error"]["details"]["field"], field, "{v}");
    }
    assert!(env.stored_requests().is_empty(), "a refusal stores nothing");
}

#[test]
fn a_callback_owed_survives_a_restart_of_the_daemon() {
    let receiver = crate::support::Receiver::start(vec![503, 200]);
    let env = HfEnv::new(
        "advance_on_poll = false\n[serve]\ninterval_ms = 100\n[[providers]]\nname = \"sim-1\"\ntype = \"sim\"\nlaunch_latency_ms = 100\n",
    );
    let first = Daemon::start(&env);
    let metadata = serde_json::json!({"callback_url": receiver.url});
    let (status, v) = rpc(
        first.port,
        "requestMachines",
        serde_json::json!({"templateId": "OnDemand-Minimal", "machineCount": 1, "metadata": metadata}),
    );
    assert_eq!(status, 200, "{v}");
    assert_eq!(receiver.wait_for(1, Duration::from_secs(20)).len(), 1, "the first try");
    assert!(first.stop().success());

    // The next try is owed in the store: a new daemon makes it.
    let second = Daemon::start(&env);
    let hits = receiver.wait_for(2, Duration::from_secs(30));
    assert_eq!(hits.len(), 2, "{hits:?}");
    assert_eq!(hits[1].json()["event"], "COMPLETED");
    drop(second);
}

#[test]
fn a_failing_cloud_alerts_each_sink_once_and_then_sends_one_digest() {
    use crate::support::{Receiver, SmtpReceiver};
    let (hook, chat, smtp) = (Receiver::start(vec![200]), Receiver::start(vec![200]), SmtpReceiver::start());
    let env = HfEnv::new(&format!(
        "advance_on_poll = false\n[request]\nmax_launch_attempts = 1\n[serve]\ninterval_ms = 100\n\
         [alerts]\nwindow_secs = 3\nmax_per_window = 1\n\
         [alerts.sinks.hook]\ntype = \"webhook\"\nurl = \"{}\"\n\
         [alerts.sinks.chat]\ntype = \"slack\"\nurl = \"{}\"\nchannel = \"#infrastructure-alerts\"\n\
         [alerts.sinks.mail]\ntype = \"email\"\nsmtp_server = \"{}\"\nfrom = \"ohf@localhost\"\nto = [\"ops-team@company.com\"]\n\
         [alerts.rules.request_failed]\nseverity = \"critical\"\n[alerts.rules.provider_unhealthy]\nenabled = false\n\
         [[providers]]\nname = \"sim-1\"\ntype = \"sim\"\ncapacity_error_rate = 1.0\n",
        hook.url, chat.url, smtp.addr
    ));
    let daemon = Daemon::start(&env);
    // Five requests fail in the same window: one alert per sink, then one digest of four.
    for _ in 0..5 {
        let (status, v) = rpc(
            daemon.port,
            "requestMachines",
            serde_json::json!({"templateId": "OnDemand-Minimal", "machineCount": 1}),
        );
        assert_eq!(status, 200, "{v}");
    }
    let hits = hook.wait_for(2, Duration::from_secs(30));
    assert_eq!(hits.len(), 2, "one alert, one digest: {:?}", hits.iter().map(|h| h.json()).collect::<Vec<_>>());
    let first = hits[0].json();
    assert_eq!(
        (first["alert"]["rule"].as_str(), first["alert"]["severity"].as_str()),
        (Some("request_failed"), Some("critical"))
    );
    assert!(first["alert"]["subject"].as_str().unwrap().starts_with("req-"), "{first}");
    let digest = hits[1].json();
    assert_eq!(digest["alert"]["suppressed"], 4, "{digest}");

    let chat_hits = chat.wait_for(2, Duration::from_secs(5));
    let text = chat_hits[0].json();
    assert_eq!(text["channel"], "#infrastructure-alerts");
    assert!(text["text"].as_str().unwrap().starts_with("[ohf CRITICAL] request_failed"), "{text}");

    let deadline = Instant::now() + Duration::from_secs(5);
    while smtp.mails().len() < 2 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    let mails = smtp.mails();
    assert_eq!(mails.len(), 2, "{mails:#?}");
    assert!(mails[0].contains("RCPT TO:<ops-team@company.com>"), "{}", mails[0]);
    assert!(mails[0].contains("Subject: [ohf CRITICAL] request_failed"), "{}", mails[0]);
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(hook.hits().len(), 2, "nothing more once the digest went");
}

#[test]
fn alert_settings_that_name_no_sink_are_refused() {
    let env = HfEnv::new(
        "[alerts.rules.request_failed]\nsinks = [\"pager\"]\n[[providers]]\nname = \"sim-1\"\ntype = \"sim\"\n",
    );
    let out = env.ohf().args(["config", "show"]).output().unwrap();
    assert!(!out.status.success());
    let shown = String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
    assert!(shown.contains("alerts.rules.request_failed.sinks: no sink is named 'pager'"), "{shown}");
}

/// A daemon on the fast sim with one completed request of `n` machines: (daemon, request id,
/// machine ids).
fn holding(n: u32) -> (HfEnv, Daemon, String, Vec<String>) {
    let env = HfEnv::new(
        "advance_on_poll = false\n[serve]\ninterval_ms = 100\n[[providers]]\nname = \"sim-1\"\ntype = \"sim\"\n\
         launch_latency_ms = 100\nshutdown_latency_ms = 100\n",
    );
    let daemon = Daemon::start(&env);
    let (_, v) =
        rpc(daemon.port, "requestMachines", serde_json::json!({"templateId": "OnDemand-Minimal", "machineCount": n}));
    let id = v["result"]["requestId"].as_str().unwrap().to_owned();
    let done = wait_status(daemon.port, &id, "COMPLETED");
    let machines =
        done["machines"].as_array().unwrap().iter().map(|m| m["machineId"].as_str().unwrap().to_owned()).collect();
    (env, daemon, id, machines)
}

/// Polls getRequestStatus until `id` is in `status` (20 s at most); its view.
fn wait_status(port: u16, id: &str, status: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (_, v) = rpc(port, "getRequestStatus", serde_json::json!({"requestId": id}));
        if v["result"]["status"] == status {
            return v["result"].clone();
        }
        assert!(Instant::now() < deadline, "{id} never reached {status}: {v}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn notices(port: u16) -> Vec<Value> {
    let (_, v) = rpc(port, "getReturnRequests", serde_json::json!({}));
    v["result"]["requests"].as_array().unwrap().clone()
}

#[test]
fn a_graceful_return_announces_its_machines_and_terminates_them_when_the_drain_ends() {
    let (_env, daemon, _, machines) = holding(2);
    let started = Instant::now();
    let (status, v) = rpc(
        daemon.port,
        "requestReturnMachines",
        serde_json::json!({"machineIds": machines, "force": false, "drainTimeout": 3}),
    );
    assert_eq!(status, 200, "{v}");
    let ret = v["result"]["requestId"].as_str().unwrap().to_owned();
    assert!(v["result"]["drainUntil"].is_string(), "{v}");
    assert_eq!(v["result"]["busy"], true, "a draining return is busy: {v}");
    assert!((1..=3).contains(&v["result"]["retryAfterSeconds"].as_u64().unwrap()), "{v}");

    // While it drains, the scheduler sees the machines going, with the seconds left.
    let announced = notices(daemon.port);
    assert_eq!(announced.len(), 2, "{announced:?}");
    assert!(announced.iter().all(|n| (1..=3).contains(&n["gracePeriod"].as_i64().unwrap())), "{announced:?}");
    std::thread::sleep(Duration::from_millis(1500));
    let (_, during) = rpc(daemon.port, "getRequestStatus", serde_json::json!({"requestId": ret}));
    assert_ne!(during["result"]["status"], "COMPLETED", "nothing goes before the drain ends: {during}");
    assert!(during["result"]["machines"].as_array().unwrap().iter().all(|m| m["status"] == "running"), "{during}");

    let done = wait_status(daemon.port, &ret, "COMPLETED");
    assert!(started.elapsed() >= Duration::from_secs(3), "terminated only after the drain");
    assert!(done["machines"].as_array().unwrap().iter().all(|m| m["status"] == "terminated"), "{done}");
    assert_eq!(done["busy"], false, "{done}");
    assert!(done.get("retryAfterSeconds").is_none());
    assert!(notices(daemon.port).is_empty());
}

#[test]
fn a_forced_return_ends_a_drain_and_a_cancelled_one_keeps_the_machines() {
    let (_env, daemon, holder, machines) = holding(2);
    // Forced again by its id: the drain ends at once.
    let (_, v) = rpc(
        daemon.port,
        "requestReturnMachines",
        serde_json::json!({"machineIds": [machines[0]], "requestId": "ret-forced", "drainTimeout": 120}),
    );
    assert!(v["result"]["drainUntil"].is_string(), "{v}");
    let started = Instant::now();
    let (status, v) = rpc(
        daemon.port,
        "requestReturnMachines",
        serde_json::json!({"machineIds": [machines[0]], "requestId": "ret-forced", "force": true}),
    );
    assert_eq!(status, 200, "{v}");
    wait_status(daemon.port, "ret-forced", "COMPLETED");
    assert!(started.elapsed() < Duration::from_secs(20));
    let (_, h) = rpc(daemon.port, "getRequestHistory", serde_json::json!({"requestId": "ret-forced"}));
    assert!(h.to_string().contains("drain_ended"), "{h}");

    // Cancelled while draining: nothing is terminated and the machine is held again.
    let (_, v) = rpc(
        daemon.port,
        "requestReturnMachines",
        serde_json::json!({"machineIds": [machines[1]], "requestId": "ret-kept", "drainTimeout": 120}),
    );
    assert!(v["result"]["drainUntil"].is_string(), "{v}");
    let (status, v) = rpc(daemon.port, "cancelRequest", serde_json::json!({"requestId": "ret-kept"}));
    assert_eq!((status, v["result"]["status"].as_str()), (200, Some("CANCELLED")), "{v}");
    assert!(notices(daemon.port).is_empty(), "no longer announced");
    std::thread::sleep(Duration::from_millis(500));
    let (_, kept) = rpc(daemon.port, "getRequestStatus", serde_json::json!({"requestId": holder}));
    let second =
        kept["result"]["machines"].as_array().unwrap().iter().find(|m| m["machineId"] == machines[1]).unwrap().clone();
    assert_eq!(second["status"], "running", "{kept}");
    // Held again: it can be returned anew, at once.
    let (_, v) = rpc(daemon.port, "requestReturnMachines", serde_json::json!({"machineIds": [machines[1]]}));
    let again = v["result"]["requestId"].as_str().unwrap().to_owned();
    let done = wait_status(daemon.port, &again, "COMPLETED");
    assert_eq!(done["machines"][0]["status"], "terminated", "{done}");
}

#[test]
fn a_drain_longer_than_the_timeout_is_refused() {
    let (_env, daemon, _, machines) = holding(1);
    let (status, v) = rpc(
        daemon.port,
        "requestReturnMachines",
        serde_json::json!({"machineIds": machines, "timeout": 120, "drainTimeout": 120}),
    );
    assert_eq!(status, 400, "{v}");
    assert_eq!(v["error"]["details"]["field"], "drainTimeout");
}

/// POST /rpc with an `x-request-id`; (status, the id answered back, body).
fn rpc_with_id(port: u16, method: &str, params: Value, id: Option<&str>) -> (u16, Option<String>, Value) {
    use std::io::{Read, Write};
    let body = serde_json::json!({"method": method, "params": params}).to_string();
    let header = id.map(|i| format!("x-request-id: {i}\r\n")).unwrap_or_default();
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(s, "POST /rpc HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n{header}Content-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len()).unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    let status = answer.split_whitespace().nth(1).unwrap().parse().unwrap();
    let (head, json) = answer.split_once("\r\n\r\n").unwrap();
    let echoed = head.lines().find_map(|l| {
        l.split_once(':').filter(|(k, _)| k.eq_ignore_ascii_case("x-request-id")).map(|(_, v)| v.trim().to_owned())
    });
    (status, echoed, serde_json::from_str(json).unwrap_or(Value::Null))
}

#[test]
fn a_call_id_is_answered_back_and_on_every_json_log_line_the_call_causes() {
    let env = HfEnv::new(
        "log_format = \"json\"\nadvance_on_poll = false\n[serve]\ninterval_ms = 100\n[[providers]]\nname = \"sim-1\"\ntype = \"sim\"\n",
    );
    let log = std::fs::File::create(env.path("log/serve.log")).unwrap();
    let daemon = Daemon::spawn_with(&env, &[], log);
    let (status, echoed, v) = rpc_with_id(
        daemon.port,
        "requestMachines",
        serde_json::json!({"templateId": "OnDemand-Minimal", "machineCount": 1}),
        Some("trace-me-42"),
    );
    assert_eq!(status, 200, "{v}");
    assert_eq!(echoed.as_deref(), Some("trace-me-42"));
    let (_, made, _) = rpc_with_id(daemon.port, "listRequests", serde_json::json!({}), None);
    assert!(made.is_some_and(|id| id.len() == 36), "a call without an id gets one");
    let (_, refused, _) = rpc_with_id(daemon.port, "listRequests", serde_json::json!({}), Some("bad id with spaces"));
    assert_ne!(refused.as_deref(), Some("bad id with spaces"), "an unusable id is replaced");
    assert!(daemon.stop().success());

    let text = std::fs::read_to_string(env.path("log/serve.log")).unwrap();
    let lines: Vec<Value> = text.lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
    assert!(!lines.is_empty() && lines.len() == text.lines().count(), "every line is JSON: {text}");
    let traced: Vec<&Value> = lines.iter().filter(|l| l["span"]["request_id"] == "trace-me-42").collect();
    assert!(
        traced.iter().any(|l| l["fields"]["message"] == "provision request accepted"),
        "the call's own log lines carry its id: {text}"
    );
}

#[test]
fn the_host_factory_log_is_rotated_by_size() {
    let env = HfEnv::new("log_max_bytes = 300\nlog_keep = 2\n[[providers]]\nname = \"sim-1\"\ntype = \"sim\"\n");
    for _ in 0..8 {
        let (out, _) = env.script("getAvailableTemplates", &serde_json::json!({}));
        assert!(out.status.success());
    }
    assert!(env.path("log/ohf.log.1").exists(), "rotated once it passed 300 bytes");
    assert!(env.path("log/ohf.log.2").exists());
    assert!(!env.path("log/ohf.log.3").exists(), "two kept");
    let size = std::fs::metadata(env.path("log/ohf.log")).unwrap().len();
    assert!(size < 2000, "the live log stays small: {size} bytes");
}

#[test]
fn every_request_records_who_asked_and_an_unknown_requester_is_refused() {
    let env = HfEnv::new("advance_on_poll = false\n[[providers]]\nname = \"sim-1\"\ntype = \"sim\"\n");
    let daemon = Daemon::start(&env);
    let ask = |extra: Value| {
        let mut p = serde_json::json!({"templateId": "OnDemand-Minimal", "machineCount": 1});
        p.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        rpc(daemon.port, "requestMachines", p)
    };
    let (_, v) = ask(serde_json::json!({}));
    assert_eq!(v["result"]["requester"], "anonymous", "the caller, without tokens: {v}");
    let (_, v) = ask(serde_json::json!({"requester": "alice"}));
    assert_eq!(v["result"]["requester"], "alice");
    for unknown in ["__Unknown__", "__UNKNOWN__", " __unknown__ "] {
        let (status, v) = ask(serde_json::json!({"requester": unknown}));
        assert_eq!((status, v["error"]["details"]["field"].as_str()), (400, Some("requester")), "{v}");
    }
    let (status, v) = rpc(
        daemon.port,
        "requestReturnMachines",
        serde_json::json!({"machineIds": ["i-0"], "requester": "__unknown__"}),
    );
    assert_eq!(status, 400, "{v}");

    // The command line asks as the user running it.
    let out = env
        .ohf()
        .env("USER", "carol")
        .args(["request", "create", "-t", "OnDemand-Minimal", "-n", "1", "-o", "json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["requester"], "carol", "{doc}");

    // Each event names who made it happen: alice's creation, the anonymous caller's cancel.
    let (_, alice) = ask(serde_json::json!({"requester": "alice"}));
    let id = alice["result"]["requestId"].as_str().unwrap().to_owned();
    let (status, v) = rpc(daemon.port, "cancelRequest", serde_json::json!({"requestId": id}));
    assert_eq!(status, 200, "{v}");
    let (_, history) = rpc(daemon.port, "getRequestHistory", serde_json::json!({"requestId": id}));
    let events = history["result"]["events"].as_array().unwrap().clone();
    let by = |kind: &str| -> Vec<Value> {
        events.iter().filter(|e| e["event"]["type"] == kind).map(|e| e["by"].clone()).collect()
    };
    assert_eq!(by("created"), vec![Value::from("alice")], "{history}");
    let cancelled: Vec<&Value> = events
        .iter()
        .filter(|e| e["event"]["type"] == "state_changed" && e["event"]["to"] == "CANCELLED")
        .map(|e| &e["by"])
        .collect();
    assert_eq!(cancelled, vec![&Value::from("anonymous")], "{history}");
    // The machine comes by the launch's answer or, when the daemon's step finds it first, by
    // adoption: either way the lifecycle's, naming no caller.
    let came: Vec<Value> = [by("machines_launched"), by("machine_adopted")].concat();
    assert!(!came.is_empty() && came.iter().all(Value::is_null), "the lifecycle's own steps name no caller: {history}");

    // Host Factory's scripts ask as the user running them.
    let file = env.path("work/hf-request.json");
    std::fs::write(&file, r#"{"template": {"templateId": "OnDemand-Minimal", "machineCount": 1}}"#).unwrap();
    let out = env.script_cmd("requestMachines").env("USER", "egoadmin").arg("-f").arg(&file).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    let (_, shown) = rpc(daemon.port, "getRequestStatus", serde_json::json!({"requestId": doc["requestId"]}));
    assert_eq!(shown["result"]["requester"], "egoadmin", "{shown}");
}
