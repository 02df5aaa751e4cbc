//! The deployment files, checked by the tools that consume them: the Prometheus config and alert
//! rules by promtool (with the rules' unit tests), the Grafana dashboards against
//! `@grafana/schema`, `docker-compose.yml` by Docker Compose's own `config`. A real Prometheus
//! running the shipped config against real instances is in `happytimes::monitoring`.

use crate::rig;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// `deploy/<path>` in the repository.
pub fn deploy_file(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy").join(path)
}

fn promtool() -> PathBuf {
    let prometheus = PathBuf::from(rig::tool_binary("HAPPYSTREAMS_PROMETHEUS_BIN", "prometheus.sh"));
    prometheus.with_file_name("promtool")
}

/// Runs a command; panics with its output unless it succeeds.
fn succeeds(command: &mut Command, what: &str) -> String {
    let output = command.output().unwrap_or_else(|e| panic!("{what}: cannot run: {e}"));
    let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "{what} failed:\n{text}");
    text
}

#[test]
fn the_prometheus_config_and_alert_rules_are_valid_and_pass_their_unit_tests() {
    let promtool = promtool();
    succeeds(
        Command::new(&promtool).arg("check").arg("config").arg(deploy_file("prometheus/prometheus.yml")),
        "promtool check config",
    );
    succeeds(
        Command::new(&promtool).arg("check").arg("rules").arg(deploy_file("prometheus/alerts.yml")),
        "promtool check rules",
    );
    let tests = succeeds(
        Command::new(&promtool).arg("test").arg("rules").arg(deploy_file("prometheus/alerts_test.yml")),
        "promtool test rules",
    );
    assert!(tests.contains("SUCCESS"), "{tests}");
    // Every alert has unit tests and a runbook entry.
    let alerts = std::fs::read_to_string(deploy_file("prometheus/alerts.yml")).unwrap();
    let unit_tests = std::fs::read_to_string(deploy_file("prometheus/alerts_test.yml")).unwrap();
    let operations = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/OPERATIONS.md")).unwrap();
    for name in alert_names(&alerts) {
        assert!(unit_tests.contains(&format!("alertname: {name}")), "{name} has no unit test in alerts_test.yml");
        assert!(operations.contains(&format!("### {name}")), "{name} has no runbook section in docs/OPERATIONS.md");
    }
}

/// The alert names of a rules file.
pub fn alert_names(rules: &str) -> Vec<String> {
    rules.lines().filter_map(|l| l.trim().strip_prefix("- alert: ")).map(|n| n.trim().to_owned()).collect()
}

#[test]
fn the_grafana_dashboards_type_check_against_the_grafana_schema() {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/rig/grafana_schema.sh");
    succeeds(
        Command::new("bash").arg(script).arg("check").arg(deploy_file("grafana/dashboards")),
        "grafana_schema.sh check",
    );
}

#[test]
fn the_compose_file_validates_and_pins_every_image() {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/rig/compose.sh");
    let compose = Path::new(env!("CARGO_MANIFEST_DIR")).join("docker-compose.yml");
    succeeds(Command::new("bash").arg(script).arg("check").arg(compose), "compose.sh check");
}

/// Every PromQL query of the shipped dashboards: (dashboard file, panel title, expression).
pub fn dashboard_queries() -> Vec<(String, String, String)> {
    fn walk(file: &str, panels: &[Value], out: &mut Vec<(String, String, String)>) {
        for panel in panels {
            let title = panel["title"].as_str().unwrap_or("").to_owned();
            for target in panel["targets"].as_array().into_iter().flatten() {
                if let Some(expr) = target["expr"].as_str() {
                    out.push((file.to_owned(), title.clone(), expr.to_owned()));
                }
            }
            walk(file, panel["panels"].as_array().map(Vec::as_slice).unwrap_or_default(), out);
        }
    }
    let mut queries = Vec::new();
    let mut files: Vec<_> =
        std::fs::read_dir(deploy_file("grafana/dashboards")).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    for path in files.into_iter().filter(|p| p.extension().is_some_and(|e| e == "json")) {
        let dashboard: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        walk(&name, dashboard["panels"].as_array().map(Vec::as_slice).unwrap_or_default(), &mut queries);
    }
    queries
}

/// A Prometheus of the test's own, running the shipped config with its scrape targets replaced
/// by `targets` and 1 s scrape and evaluation intervals.
pub struct Prometheus {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    _dir: tempfile::TempDir,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Prometheus {
    /// Starts it and waits until it answers.
    pub fn start(targets: &[String]) -> Prometheus {
        let dir = tempfile::tempdir().unwrap();
        let shipped = std::fs::read_to_string(deploy_file("prometheus/prometheus.yml")).unwrap();
        let mut config: Value = serde_saphyr::from_str(&shipped).unwrap();
        config["global"]["scrape_interval"] = "1s".into();
        config["global"]["evaluation_interval"] = "1s".into();
        config["rule_files"] = serde_json::json!([deploy_file("prometheus/alerts.yml")]);
        let jobs = config["scrape_configs"].as_array_mut().unwrap();
        let job = jobs.iter_mut().find(|j| j["job_name"] == "happystreams").expect("the happystreams job");
        let job = job.as_object_mut().unwrap();
        assert!(job.remove("dns_sd_configs").is_some(), "the shipped job discovers instances by DNS");
        job.insert("static_configs".into(), serde_json::json!([{ "targets": targets }]));
        // JSON is YAML: Prometheus reads it as its config file.
        let file = dir.path().join("prometheus.yml");
        std::fs::write(&file, serde_json::to_string_pretty(&config).unwrap()).unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let log = std::fs::File::create(dir.path().join("prometheus.log")).unwrap();
        let child = Command::new(rig::tool_binary("HAPPYSTREAMS_PROMETHEUS_BIN", "prometheus.sh"))
            .arg(format!("--config.file={}", file.display()))
            .arg(format!("--storage.tsdb.path={}", dir.path().join("data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start prometheus");
        let prometheus = Prometheus { child, url: format!("http://127.0.0.1:{port}"), _dir: dir };
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "Prometheus did not listen within 30 s:\n{}", prometheus.log());
            std::thread::sleep(Duration::from_millis(100));
        }
        prometheus
    }

    /// Its log.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self._dir.path().join("prometheus.log")).unwrap_or_default()
    }

    async fn get(&self, path: &str, query: &[(&str, &str)]) -> Value {
        let url = reqwest::Url::parse_with_params(&format!("{}{path}", self.url), query).unwrap();
        let response = reqwest::Client::new().get(url).send().await.unwrap();
        let body: Value = response.json().await.unwrap();
        body
    }

    /// An instant query: `Err` with Prometheus's error, or the result vector.
    pub async fn query(&self, expr: &str) -> Result<Vec<Value>, String> {
        let body = self.get("/api/v1/query", &[("query", expr)]).await;
        if body["status"] != "success" {
            return Err(format!("{}: {}", body["errorType"], body["error"]));
        }
        Ok(body["data"]["result"].as_array().cloned().unwrap_or_default())
    }

    /// Series of a metric name.
    pub async fn series(&self, name: &str) -> Vec<Value> {
        let body = self.get("/api/v1/series", &[("match[]", name)]).await;
        body["data"].as_array().cloned().unwrap_or_default()
    }

    /// Active alerts (pending or firing).
    pub async fn alerts(&self) -> Vec<Value> {
        let body = self.get("/api/v1/alerts", &[]).await;
        body["data"]["alerts"].as_array().cloned().unwrap_or_default()
    }
}
