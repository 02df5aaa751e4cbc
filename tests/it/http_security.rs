//! The HTTP servers' security options as a user sets them up: `registry serve` over TLS with a
//! users file (read-only and admin roles), `schemas register` through it as each role, and
//! `run`'s metrics endpoint over TLS.

use crate::cli::{Server, happystreams};
use crate::rig::tansu;
use crate::runtime::Setup;
use serde_json::{Value as Json, json};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

/// A test CA (`ca.pem`) and a server certificate it signed for 127.0.0.1 with its key, made
/// with `openssl`: returns (CA, certificate, key).
pub fn certificates(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let openssl = |args: &[&str]| {
        let made = std::process::Command::new("openssl")
            .current_dir(dir)
            .args(args)
            .output()
            .expect("openssl (apt: openssl) makes the test certificates");
        assert!(made.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&made.stderr));
    };
    let days = ["-days", "2"];
    openssl(
        &[
            &["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=happystreams test CA"][..],
            &days,
            &["-keyout", "ca.key", "-out", "ca.pem"],
        ]
        .concat(),
    );
    openssl(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=127.0.0.1",
        "-keyout",
        "key.pem",
        "-out",
        "server.csr",
    ]);
    std::fs::write(dir.join("san.ext"), "subjectAltName=IP:127.0.0.1\n").unwrap();
    openssl(
        &[
            &["x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial"][..],
            &days,
            &["-extfile", "san.ext", "-out", "cert.pem"],
        ]
        .concat(),
    );
    (dir.join("ca.pem"), dir.join("cert.pem"), dir.join("key.pem"))
}

/// An HTTP client that trusts `cert`.
fn client(cert: &Path) -> reqwest::Client {
    let pem = std::fs::read(cert).unwrap();
    reqwest::Client::builder().add_root_certificate(reqwest::Certificate::from_pem(&pem).unwrap()).build().unwrap()
}

/// One request: status, JSON body, whether it carries a `WWW-Authenticate` challenge.
async fn call(
    http: &reqwest::Client,
    url: &str,
    method: reqwest::Method,
    user: Option<(&str, &str)>,
    body: Option<Json>,
) -> (u16, Json, bool) {
    let mut request = http.request(method, url);
    if let Some((name, password)) = user {
        request = request.basic_auth(name, Some(password));
    }
    if let Some(body) = body {
        request = request.header("Content-Type", "application/vnd.schemaregistry.v1+json").body(body.to_string());
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let challenge = response.headers().get("www-authenticate").is_some();
    (status, response.json::<Json>().await.unwrap_or(Json::Null), challenge)
}

/// `happystreams registry hash-password` with the password on stdin.
fn hash(password: &str) -> String {
    let mut child = happystreams()
        .args(["registry", "hash-password"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(password.as_bytes()).unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout).unwrap().trim().to_owned()
}

fn wait_for_port(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "nothing listens on port {port}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_registry_over_tls_lets_read_only_users_read_and_only_admins_write() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert, key) = certificates(dir.path());
    let users = dir.path().join("users");
    std::fs::write(
        &users,
        format!("# who may do what\nana:admin:{}\nbo:read-only:{}\n", hash("ana-pw"), hash("bo-pw")),
    )
    .unwrap();
    let port = free_port();
    let child = happystreams()
        .args(["registry", "serve", "--in-memory", "--listen", &format!("127.0.0.1:{port}")])
        .args(["--tls-cert", cert.to_str().unwrap(), "--tls-key", key.to_str().unwrap()])
        .args(["--users", users.to_str().unwrap()])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let _server = Server(child);
    wait_for_port(port);
    let url = format!("https://127.0.0.1:{port}");
    let http = client(&ca);
    let schema = json!({"schema": json!({"type": "record", "name": "T", "fields": []}).to_string()});
    let (ana, bo) = (Some(("ana", "ana-pw")), Some(("bo", "bo-pw")));
    use reqwest::Method as M;

    assert_eq!(call(&http, &format!("{url}/_health"), M::GET, None, None).await.0, 200, "health stays open");
    let (status, body, challenge) = call(&http, &format!("{url}/subjects"), M::GET, None, None).await;
    assert_eq!((status, body["error_code"].clone(), challenge), (401, json!(401), true), "{body}");
    assert_eq!(
        call(&http, &format!("{url}/subjects"), M::GET, Some(("bo", "ana-pw")), None).await.0,
        401,
        "wrong password"
    );
    assert_eq!(
        call(&http, &format!("{url}/subjects"), M::GET, Some(("eve", "bo-pw")), None).await.0,
        401,
        "unknown user"
    );
    let (status, body, _) =
        call(&http, &format!("{url}/subjects/t-value/versions"), M::POST, bo, Some(schema.clone())).await;
    assert_eq!((status, body["error_code"].clone()), (403, json!(40301)), "{body}");
    assert!(body["message"].as_str().unwrap().contains("read-only"), "{body}");
    assert_eq!(call(&http, &format!("{url}/config"), M::PUT, bo, Some(json!({"compatibility": "NONE"}))).await.0, 403);
    assert_eq!(
        call(&http, &format!("{url}/subjects/t-value/versions"), M::POST, ana, Some(schema.clone())).await.0,
        200
    );
    assert_eq!(call(&http, &format!("{url}/subjects"), M::GET, bo, None).await.1, json!(["t-value"]));
    assert_eq!(
        call(&http, &format!("{url}/subjects/t-value"), M::POST, bo, Some(schema.clone())).await.0,
        200,
        "a lookup only reads"
    );
    assert_eq!(
        call(&http, &format!("{url}/compatibility/subjects/t-value/versions/latest"), M::POST, bo, Some(schema))
            .await
            .0,
        200
    );
    assert_eq!(call(&http, &format!("{url}/subjects/t-value"), M::DELETE, bo, None).await.0, 403);
    assert_eq!(call(&http, &format!("{url}/subjects/t-value"), M::DELETE, ana, None).await.0, 200);
    let plain = reqwest::get(format!("http://127.0.0.1:{port}/_health")).await;
    assert!(plain.is_err() || !plain.unwrap().status().is_success(), "TLS only on the TLS port");

    // The product's own client, as each role, trusting the certificate through registry.ca_file.
    let schemas = Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas");
    let register = |user: &str, password: &str| {
        happystreams()
            .args(["schemas", "register", "--dir", schemas.to_str().unwrap(), "--registry", &url])
            .env("HAPPYSTREAMS_REGISTRY__USERNAME", user)
            .env("HAPPYSTREAMS_REGISTRY__PASSWORD", password)
            .env("HAPPYSTREAMS_REGISTRY__CA_FILE", &ca)
            .output()
            .unwrap()
    };
    let refused = register("bo", "bo-pw");
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success() && stderr.contains("read-only"), "{stderr}");
    assert!(!stderr.contains("bo-pw"), "the password is not echoed: {stderr}");
    let registered = register("ana", "ana-pw");
    assert!(registered.status.success(), "{}", String::from_utf8_lossy(&registered.stderr));
    assert!(String::from_utf8_lossy(&registered.stdout).contains("happytimes.clicks-value\tid "));
}

#[test]
fn registry_serve_refuses_a_certificate_without_its_key_and_a_bad_users_file() {
    let dir = tempfile::tempdir().unwrap();
    let (_, cert, key) = certificates(dir.path());
    let users = dir.path().join("users");
    std::fs::write(&users, "ana:admin:not-a-hash\n").unwrap();
    for (args, says) in [
        (vec!["--tls-cert", cert.to_str().unwrap()], "without its key"),
        (vec!["--tls-cert", key.to_str().unwrap(), "--tls-key", key.to_str().unwrap()], "no PEM certificate"),
        (vec!["--users", users.to_str().unwrap()], "line 1"),
    ] {
        let mut child = happystreams()
            .args(["registry", "serve", "--in-memory", "--listen", "127.0.0.1:0"])
            .args(&args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // A server that starts anyway is a failure, not a hang.
        let deadline = Instant::now() + Duration::from_secs(20);
        while child.try_wait().unwrap().is_none() {
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("registry serve {args:?} started instead of refusing");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let output = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success() && stderr.contains(says), "{args:?}: {stderr}");
    }
}

/// `run` with `runtime.metrics_tls_cert` and `_key`: `/metrics` answers over HTTPS only.
#[tokio::test(flavor = "multi_thread")]
async fn metrics_are_served_over_tls_when_configured() {
    let setup = Setup::on(tansu(), "rt_metrics_tls", "dead_letter", 1).await;
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert, key) = certificates(dir.path());
    let (cert_text, key_text) = (cert.to_str().unwrap().to_owned(), key.to_str().unwrap().to_owned());
    let env = [
        ("HAPPYSTREAMS_RUNTIME__METRICS_TLS_CERT", cert_text.as_str()),
        ("HAPPYSTREAMS_RUNTIME__METRICS_TLS_KEY", key_text.as_str()),
    ];
    let mut instance = setup.start_with("only", &["--num-threads", "1"], &env);
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", instance.port)).is_err() {
        assert!(Instant::now() < deadline, "no metrics endpoint; log:\n{}", instance.log_text());
        std::thread::sleep(Duration::from_millis(50));
    }
    let url = format!("https://127.0.0.1:{}/metrics", instance.port);
    let text = client(&ca).get(url).send().await.unwrap().text().await.unwrap();
    assert!(text.contains("happystreams_"), "{text}");
    let plain = reqwest::get(format!("http://127.0.0.1:{}/metrics", instance.port)).await;
    assert!(plain.is_err() || !plain.unwrap().status().is_success());
    assert!(instance.terminate().success(), "{}", instance.log_text());
}

/// An instance's HTTP server with `runtime.http_token`: `/metrics`, the query API and the
/// dashboard need the bearer token, the health checks do not; `/health/ready` answers 503 with a reason until every task runs,
/// then 200 with the running tasks.
#[tokio::test(flavor = "multi_thread")]
async fn health_checks_are_open_and_ready_once_every_task_runs_while_metrics_need_the_token() {
    let setup = Setup::on(tansu(), "rt_health", "dead_letter", 2).await;
    let env = [("HAPPYSTREAMS_RUNTIME__HTTP_TOKEN", "tok-58e1c2")];
    let mut instance = setup.start_with("only", &["--num-threads", "1"], &env);
    let base = format!("http://127.0.0.1:{}", instance.port);
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut not_ready = Vec::new();
    let ready = loop {
        assert!(Instant::now() < deadline, "never ready ({not_ready:?}); log:\n{}", instance.log_text());
        let Ok(response) = http.get(format!("{base}/health/ready")).send().await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let status = response.status().as_u16();
        let body: Json = response.json().await.unwrap();
        match status {
            200 => break body,
            503 => not_ready.push(body["reason"].as_str().unwrap_or_default().to_owned()),
            other => panic!("/health/ready answered {other}: {body}"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(!not_ready.is_empty(), "not ready before the group assigned anything");
    assert!(not_ready.iter().all(|r| ["starting", "joining", "restoring"].contains(&r.as_str())), "{not_ready:?}");
    assert_eq!(ready["running"].as_array().map(Vec::len), Some(4), "2 partitions × 2 sub-topologies: {ready}");
    let status = |response: reqwest::Response| response.status().as_u16();
    assert_eq!(status(http.get(format!("{base}/health/live")).send().await.unwrap()), 200);
    let refused = http.get(format!("{base}/metrics")).send().await.unwrap();
    assert_eq!((refused.status().as_u16(), refused.headers().contains_key("www-authenticate")), (401, true));
    assert_eq!(status(http.get(format!("{base}/metrics")).bearer_auth("wrong").send().await.unwrap()), 401);
    let metrics = http.get(format!("{base}/metrics")).bearer_auth("tok-58e1c2").send().await.unwrap();
    assert_eq!(metrics.status().as_u16(), 200);
    assert!(metrics.text().await.unwrap().contains("happystreams_task_running"));
    // The query API and the dashboard need it too; the dashboard's paths also take it as
    // `access_token` (a browser's EventSource sends no headers), the API's do not.
    for path in ["/v1/stores", "/v1/outputs", "/dashboard", "/dashboard/snapshot", "/v1/stores?access_token=tok-58e1c2"]
    {
        assert_eq!(status(http.get(format!("{base}{path}")).send().await.unwrap()), 401, "{path} without the token");
    }
    let stores = http.get(format!("{base}/v1/stores")).bearer_auth("tok-58e1c2").send().await.unwrap();
    assert_eq!(stores.status().as_u16(), 200);
    assert!(stores.text().await.unwrap().contains("views_per_source"));
    for path in ["/dashboard?access_token=tok-58e1c2", "/dashboard/snapshot?access_token=tok%2D58e1c2"] {
        assert_eq!(status(http.get(format!("{base}{path}")).send().await.unwrap()), 200, "{path}");
    }
    // `happystreams query --url` says a token is needed, and uses one.
    let query = |token: Option<&str>| {
        let mut command = crate::cli::happystreams();
        command.args(["query", "--url", &base]).env_remove("HAPPYSTREAMS_HTTP_TOKEN");
        if let Some(token) = token {
            command.args(["--token", token]);
        }
        command.output().unwrap()
    };
    let refused = query(None);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success() && stderr.contains("--token"), "{stderr}");
    let listed = query(Some("tok-58e1c2"));
    let stdout = String::from_utf8_lossy(&listed.stdout);
    assert!(
        listed.status.success() && stdout.contains("windowed_aggregate"),
        "{stdout}{}",
        String::from_utf8_lossy(&listed.stderr)
    );
    assert!(instance.terminate().success(), "{}", instance.log_text());
    assert!(!instance.log_text().contains("tok-58e1c2"), "the token is not logged");
}

/// An empty `runtime.http_token` would let every request through: `run` refuses to start.
#[test]
fn an_empty_http_token_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let topology = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/topologies/views_by_source.yaml");
    let output = happystreams()
        .args(["run", "--topology", topology, "--bootstrap-servers", "127.0.0.1:9", "--http-address", "127.0.0.1:0"])
        .arg("--state-dir")
        .arg(dir.path())
        .env("HAPPYSTREAMS_RUNTIME__HTTP_TOKEN", " ")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success() && stderr.contains("runtime.http_token is empty"), "{stderr}");
}
