//! End-to-end harness for `happystreams sftp-sync`: N files of M MiB on a private OpenSSH server
//! (tests/rig/sshd.sh) pulled into a local lake over loopback, then a rerun that finds them all in
//! the manifest. Prints a table.
//!
//! `cargo bench --bench sftp` (release). Sizes: `HAPPYSTREAMS_BENCH_FILES` (default 100),
//! `HAPPYSTREAMS_BENCH_FILE_MB` (default 10).

use std::path::Path;
use std::process::Command;
use std::time::Instant;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn rig(args: &[&str], dir: &Path) -> String {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/rig/sshd.sh");
    let out = Command::new("bash").arg(script).args(args).arg(dir).output().expect("tests/rig/sshd.sh");
    assert!(out.status.success(), "sshd.sh {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn sync(config: &Path) -> (f64, String) {
    let started = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_happystreams"))
        .arg("--config")
        .arg(config)
        .args(["sftp-sync", "--source", "bench"])
        .output()
        .expect("happystreams sftp-sync");
    let seconds = started.elapsed().as_secs_f64();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    (seconds, String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let (files, mb) = (env_usize("HAPPYSTREAMS_BENCH_FILES", 100), env_usize("HAPPYSTREAMS_BENCH_FILE_MB", 10));
    let dir = tempfile::tempdir().unwrap();
    let remote = dir.path().join("remote");
    std::fs::create_dir_all(&remote).unwrap();
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    for i in 0..files {
        // Incompressible content (SSH compression would flatter repeated bytes).
        let content: Vec<u8> = (0..mb << 20)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state as u8
            })
            .collect();
        std::fs::write(remote.join(format!("f{i:04}.csv")), content).unwrap();
    }
    let sshd = dir.path().join("sshd");
    let port = rig(&["start"], &sshd);
    let config = dir.path().join("bench.toml");
    std::fs::write(
        &config,
        format!(
            "[lake]\nurl = \"{lake}\"\n[sftp.sources.bench]\nhost = \"127.0.0.1\"\nport = {port}\nuser = \"root\"\nkey_file = \"{key}\"\nremote_dir = \"{remote}\"\nglob = \"*.csv\"\nknown_hosts = \"{known}\"\n",
            lake = dir.path().join("lake").display(),
            key = sshd.join("id_ed25519").display(),
            remote = remote.display(),
            known = sshd.join("known_hosts").display(),
        ),
    )
    .unwrap();
    let (first, summary) = sync(&config);
    let (second, _) = sync(&config);
    rig(&["stop"], &sshd);
    let total_mb = (files * mb) as f64 * 1.048_576;
    println!("\n{summary}\n\n| what | input | time | rate |\n|---|---|---|---|");
    println!(
        "| sftp-sync over loopback into a local lake | {files} files × {mb} MiB | {first:.2} s | {:.0} MB/s |",
        total_mb / first
    );
    println!("| rerun (everything already in the manifest) | {files} files | {second:.2} s | - |");
}
