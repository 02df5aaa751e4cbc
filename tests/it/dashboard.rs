//! The live dashboard in a real browser: `happystreams demo` with live traffic, its dashboard
//! opened by headless Chromium driven by Playwright (`tests/dashboard/check_dashboard.py`): the
//! numbers on the page equal the query API's, the page updates without a reload, and a
//! screenshot is kept (`$HAPPYSTREAMS_TEST_ARTIFACTS`, default `<target dir>/test-artifacts`).

use crate::rig;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Where tests leave files for people to look at.
fn artifacts() -> PathBuf {
    let dir = std::env::var_os("HAPPYSTREAMS_TEST_ARTIFACTS").map(PathBuf::from).unwrap_or_else(|| {
        let target = std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"));
        target.join("test-artifacts")
    });
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn get(url: &str) -> Option<serde_json::Value> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async { reqwest::get(url).await.ok()?.json().await.ok() })
}

#[test]
fn the_demo_dashboard_shows_the_api_numbers_and_updates_live() {
    let python = rig::tool_binary("HAPPYSTREAMS_BROWSER_PYTHON", "browser.sh");
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let base = format!("http://127.0.0.1:{port}");
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("demo.log");
    let started = Instant::now();
    // A short history at full speed, then live traffic (ten minutes of event time a second).
    let mut demo = Command::new(env!("CARGO_BIN_EXE_happystreams"))
        .args(["demo", "--visitors", "60", "--days", "3", "--rate", "0", "--speed", "600", "--lake", ""])
        .args(["--http-address", &format!("127.0.0.1:{port}")])
        .stdout(std::fs::File::create(&log).unwrap())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // The first funnel numbers: the conversion store has entries.
    let mut first = None;
    while first.is_none() && started.elapsed() < Duration::from_secs(60) {
        let snapshot = get(&format!("{base}/dashboard/snapshot"));
        let entries =
            snapshot.as_ref().and_then(|s| s["datasets"]["conversion_funnel"]["entries"].as_object().cloned());
        if entries.is_some_and(|e| !e.is_empty()) {
            first = Some(started.elapsed());
        } else {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    let screenshot = artifacts().join("dashboard.png");
    let _ = std::fs::remove_file(&screenshot);
    let check = Command::new(python)
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/dashboard/check_dashboard.py"))
        .args([&base, screenshot.to_str().unwrap(), "--timeout", "60"])
        .output()
        .unwrap();
    let _ = Command::new("kill").args(["-TERM", &demo.id().to_string()]).status();
    let _ = demo.wait();
    let output = std::fs::read_to_string(&log).unwrap_or_default();
    let report = format!(
        "{}{}\ndemo output:\n{output}",
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr)
    );
    eprintln!(
        "first funnel numbers on the dashboard {:.2} s after the demo started; {}",
        first.map_or(f64::NAN, |f| f.as_secs_f64()),
        String::from_utf8_lossy(&check.stdout).trim()
    );
    assert!(first.is_some(), "no funnel numbers within 60 s:\n{report}");
    assert!(check.status.success(), "the dashboard check failed:\n{report}");
    assert!(
        std::fs::metadata(&screenshot).is_ok_and(|m| m.len() > 10_000),
        "no screenshot at {}",
        screenshot.display()
    );
    assert!(output.contains(&format!("live dashboard at {base}/dashboard")), "{output}");
    assert!(output.contains("live traffic now"), "the check ran before the live traffic: {output}");
}
