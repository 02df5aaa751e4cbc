//! `happystreams sftp-sync` against a private OpenSSH server (tests/rig/sshd.sh) into a local
//! lake: new files land once, host keys are verified, a refused open fails the file, and a
//! server killed mid-transfer leaves no partial file; the next run completes it.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

struct Server {
    dir: PathBuf,
    port: u16,
}

impl Server {
    fn start(dir: &Path, sftp_flags: &str) -> Server {
        let rig = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/rig/sshd.sh");
        let out = Command::new("bash")
            .arg(rig)
            .arg("start")
            .arg(dir)
            .env("SSHD_SFTP_FLAGS", sftp_flags)
            .output()
            .expect("run tests/rig/sshd.sh");
        assert!(out.status.success(), "sshd.sh start: {}", String::from_utf8_lossy(&out.stderr));
        let port = String::from_utf8_lossy(&out.stdout).trim().parse().expect("sshd.sh prints the port");
        Server { dir: dir.to_owned(), port }
    }

    fn stop(&self) {
        let rig = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/rig/sshd.sh");
        let _ = Command::new("bash").arg(rig).arg("stop").arg(&self.dir).status();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A config file for one source `partner` reading `remote` into the lake `lake`.
fn config(dir: &Path, server: &Server, remote: &Path, lake: &Path, known_hosts: &Path) -> PathBuf {
    let path = dir.join("happystreams.toml");
    std::fs::write(
        &path,
        format!(
            r#"[lake]
url = "{lake}"

[sftp.sources.partner]
host = "127.0.0.1"
port = {port}
user = "root"
key_file = "{key}"
remote_dir = "{remote}"
glob = "*.csv"
known_hosts = "{known_hosts}"
attempts = 2
"#,
            lake = lake.display(),
            port = server.port,
            key = server.dir.join("id_ed25519").display(),
            remote = remote.display(),
            known_hosts = known_hosts.display(),
        ),
    )
    .unwrap();
    path
}

fn sync(config: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_happystreams"))
        .args(["--config"])
        .arg(config)
        .args(["sftp-sync", "--source", "partner"])
        .env("RUST_LOG", "happystreams=info")
        .output()
        .expect("run happystreams sftp-sync")
}

/// `sync` in the background.
fn spawn_sync(config: &Path) -> std::process::Child {
    Command::new(env!("CARGO_BIN_EXE_happystreams"))
        .args(["--config"])
        .arg(config)
        .args(["sftp-sync", "--source", "partner"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run happystreams sftp-sync")
}

fn text(output: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr))
}

/// Every file under `dir`, relative, sorted.
fn files(dir: &Path) -> Vec<String> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(root, &path, out);
            } else {
                out.push(path.strip_prefix(root).unwrap().display().to_string());
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

fn setup() -> (tempfile::TempDir, PathBuf, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let remote = dir.path().join("outgoing");
    let lake = dir.path().join("lake");
    std::fs::create_dir_all(&remote).unwrap();
    (dir, remote, lake)
}

#[test]
fn new_files_land_once_with_a_manifest_and_a_rerun_transfers_nothing() {
    let (dir, remote, lake) = setup();
    let server = Server::start(&dir.path().join("sshd"), "");
    for i in 0..3 {
        std::fs::write(remote.join(format!("clicks-{i}.csv")), format!("id,n\n{i},{}\n", i * 10).repeat(1000)).unwrap();
    }
    std::fs::write(remote.join("notes.txt"), "not matched by the glob").unwrap();
    let config = config(dir.path(), &server, &remote, &lake, &server.dir.join("known_hosts"));

    let first = sync(&config);
    assert!(first.status.success(), "{}", text(&first));
    assert!(text(&first).contains("3 files"), "{}", text(&first));
    let landed = files(&lake);
    let data: Vec<&String> = landed.iter().filter(|f| f.ends_with(".csv")).collect();
    assert_eq!(data.len(), 3, "{landed:?}");
    for file in &data {
        assert!(file.starts_with("landing/partner/date="), "{file}");
        let name = Path::new(file).file_name().unwrap();
        assert_eq!(std::fs::read(lake.join(file)).unwrap(), std::fs::read(remote.join(name)).unwrap());
    }
    assert_eq!(landed.iter().filter(|f| f.starts_with("landing/partner/_manifest/")).count(), 3, "{landed:?}");
    assert!(!landed.iter().any(|f| f.contains('#')), "no staging files: {landed:?}");

    let second = sync(&config);
    assert!(second.status.success(), "{}", text(&second));
    assert!(text(&second).contains("0 files (0.0 MB) transferred, 3 already in the lake"), "{}", text(&second));

    // A new file and a changed one are taken on the next run.
    std::fs::write(remote.join("clicks-3.csv"), "id,n\n3,30\n").unwrap();
    std::fs::write(remote.join("clicks-0.csv"), "id,n\n0,1\n").unwrap();
    let third = sync(&config);
    assert!(text(&third).contains("2 files"), "{}", text(&third));
}

#[test]
fn unknown_and_changed_host_keys_are_refused() {
    let (dir, remote, lake) = setup();
    let server = Server::start(&dir.path().join("sshd"), "");
    std::fs::write(remote.join("a.csv"), "x\n").unwrap();
    let empty = dir.path().join("empty_known_hosts");
    std::fs::write(&empty, "").unwrap();
    let unknown = sync(&config(dir.path(), &server, &remote, &lake, &empty));
    assert!(!unknown.status.success());
    assert!(text(&unknown).contains("is not in"), "{}", text(&unknown));

    // The right host, another key on record.
    let other = tempfile::tempdir().unwrap();
    let key = other.path().join("key");
    let made = Command::new("ssh-keygen").args(["-q", "-t", "ed25519", "-N", "", "-f"]).arg(&key).status().unwrap();
    assert!(made.success());
    let public = std::fs::read_to_string(key.with_extension("pub")).unwrap();
    let wrong = dir.path().join("wrong_known_hosts");
    std::fs::write(
        &wrong,
        format!("[127.0.0.1]:{} {}", server.port, public.split_whitespace().take(2).collect::<Vec<_>>().join(" ")),
    )
    .unwrap();
    let changed = sync(&config(dir.path(), &server, &remote, &lake, &wrong));
    assert!(!changed.status.success());
    assert!(text(&changed).contains("HOST KEY CHANGED"), "{}", text(&changed));
    assert!(files(&lake).iter().all(|f| !f.ends_with(".csv")), "nothing lands from an unverified host");
}

#[test]
fn a_refused_open_fails_the_file_and_lands_nothing() {
    let (dir, remote, lake) = setup();
    let server = Server::start(&dir.path().join("sshd"), "-P open");
    std::fs::write(remote.join("a.csv"), "x\n").unwrap();
    let out = sync(&config(dir.path(), &server, &remote, &lake, &server.dir.join("known_hosts")));
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("1 failed"), "{}", text(&out));
    assert!(text(&out).to_lowercase().contains("permission denied"), "{}", text(&out));
    assert!(files(&lake).iter().all(|f| !f.ends_with(".csv")));
}

#[test]
fn a_server_killed_mid_transfer_leaves_no_partial_file_and_the_next_run_completes_it() {
    let (dir, remote, lake) = setup();
    let sshd = dir.path().join("sshd");
    let server = Server::start(&sshd, "");
    let big: Vec<u8> = (0..120u32 << 20).map(|i| (i % 251) as u8).collect();
    std::fs::write(remote.join("big.csv"), &big).unwrap();
    let config = config(dir.path(), &server, &remote, &lake, &server.dir.join("known_hosts"));
    let child = spawn_sync(&config);
    // Let the transfer start, then kill the server and its sessions.
    std::thread::sleep(std::time::Duration::from_millis(700));
    server.stop();
    let interrupted = child.wait_with_output().unwrap();
    assert!(!files(&lake).iter().any(|f| f.ends_with("big.csv")), "no partial file is visible: {}", text(&interrupted));
    let _ = interrupted;

    // Back up (on the same port when it is still free; the config follows it either way).
    let restarted = Server::start(&sshd, "");
    let config = self::config(dir.path(), &restarted, &remote, &lake, &restarted.dir.join("known_hosts"));
    let out = sync(&config);
    assert!(out.status.success(), "{}", text(&out));
    let landed: Vec<String> = files(&lake).into_iter().filter(|f| f.ends_with("big.csv")).collect();
    assert_eq!(landed.len(), 1, "{landed:?}");
    assert_eq!(std::fs::read(lake.join(&landed[0])).unwrap(), big);
}

#[test]
fn a_file_growing_during_the_transfer_fails_and_is_taken_whole_on_the_next_run() {
    let (dir, remote, lake) = setup();
    let server = Server::start(&dir.path().join("sshd"), "");
    let path = remote.join("growing.csv");
    std::fs::write(&path, vec![b'x'; 100 << 20]).unwrap();
    let config = config(dir.path(), &server, &remote, &lake, &server.dir.join("known_hosts"));
    let child = spawn_sync(&config);
    // A partner's writer appends while the file is being read: once the upload's staging file
    // shows up in the lake, the transfer is under way.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !files(&lake).iter().any(|f| f.contains(".growing.csv.staging")) {
        assert!(std::time::Instant::now() < deadline, "the transfer never started");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    {
        use std::io::Write;
        let mut file = std::fs::OpenOptions::new().append(true).open(&path).unwrap();
        file.write_all(&vec![b'y'; 1 << 20]).unwrap();
    }
    let first = child.wait_with_output().unwrap();
    assert_eq!(first.status.code(), Some(1), "{}", text(&first));
    assert!(text(&first).contains("changed during the transfer"), "{}", text(&first));
    assert!(!files(&lake).iter().any(|f| f.ends_with("growing.csv")), "nothing half-changed is visible");

    let second = sync(&config);
    assert!(second.status.success(), "{}", text(&second));
    let landed: Vec<String> = files(&lake).into_iter().filter(|f| f.ends_with("growing.csv")).collect();
    assert_eq!(std::fs::read(lake.join(&landed[0])).unwrap(), std::fs::read(&path).unwrap());
}

#[test]
fn a_sync_killed_mid_file_leaves_nothing_behind_and_the_next_run_lands_it_once() {
    let (dir, remote, lake) = setup();
    let server = Server::start(&dir.path().join("sshd"), "");
    let big: Vec<u8> = (0..80u32 << 20).map(|i| (i % 253) as u8).collect();
    std::fs::write(remote.join("big.csv"), &big).unwrap();
    let config = config(dir.path(), &server, &remote, &lake, &server.dir.join("known_hosts"));
    let mut child = spawn_sync(&config);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !files(&lake).iter().any(|f| f.contains(".big.csv.staging")) {
        assert!(std::time::Instant::now() < deadline, "the transfer never started");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    child.kill().unwrap(); // SIGKILL mid-file
    child.wait().unwrap();
    // Spark, Hive and DuckDB's Hive reader skip names (files or folders) starting with `.` or `_`.
    let hidden = |f: &String| f.split('/').any(|part| part.starts_with('.') || part.starts_with('_'));
    let all = files(&lake);
    assert!(all.iter().any(|f| f.contains(".big.csv.staging")), "the killed transfer left its staging file: {all:?}");
    let seen: Vec<&String> = all.iter().filter(|f| f.contains("big.csv") && !hidden(f)).collect();
    assert!(seen.is_empty(), "a reader listing the lake sees a partial file: {seen:?}");

    let out = sync(&config);
    assert!(out.status.success(), "{}", text(&out));
    let landed: Vec<String> =
        files(&lake).into_iter().filter(|f| f.contains("big.csv") && !f.contains("_manifest")).collect();
    assert_eq!(landed.len(), 1, "one file, no staging leftovers: {landed:?}");
    assert_eq!(std::fs::read(lake.join(&landed[0])).unwrap(), big);
}

/// A remote file name becomes part of a lake path, so only plain names land: one with a
/// backslash or a control character is refused with an error naming it (the run fails), one a
/// lake reader would never see (`_SUCCESS.csv`, `.x.csv`) is skipped with a warning.
#[test]
fn remote_names_that_are_not_plain_file_names_never_become_lake_paths() {
    let (dir, remote, lake) = setup();
    let server = Server::start(&dir.path().join("sshd"), "");
    for name in ["ok.csv", "..\\..\\escape.csv", "line\nbreak.csv", "_SUCCESS.csv", ".hidden.csv"] {
        std::fs::write(remote.join(name), "id\n1\n").unwrap();
    }
    let config = config(dir.path(), &server, &remote, &lake, &server.dir.join("known_hosts"));
    let out = sync(&config);
    let text = text(&out);
    assert!(!out.status.success(), "refused names fail the run: {text}");
    assert!(text.contains(r#""..\\..\\escape.csv" is not landed"#), "{text}");
    assert!(text.contains(r#""line\nbreak.csv" is not landed"#), "{text}");
    assert!(text.contains("would be invisible to lake readers"), "{text}");
    let landed: Vec<String> = files(&lake).into_iter().filter(|f| !f.contains("_manifest")).collect();
    assert_eq!(landed.len(), 1, "{landed:?}");
    assert!(landed[0].ends_with("/ok.csv"), "{landed:?}");
}

#[test]
fn remote_files_are_deleted_or_moved_only_after_a_verified_upload() {
    let (dir, remote, lake) = setup();
    let server = Server::start(&dir.path().join("sshd"), "");
    std::fs::write(remote.join("a.csv"), "id\n1\n").unwrap();
    let path = config(dir.path(), &server, &remote, &lake, &server.dir.join("known_hosts"));
    let archive = dir.path().join("archive");
    std::fs::create_dir_all(&archive).unwrap();
    let toml = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, format!("{toml}after_upload = {{ move_to = \"{}\" }}\n", archive.display())).unwrap();
    let out = sync(&path);
    assert!(out.status.success(), "{}", text(&out));
    assert!(!remote.join("a.csv").exists() && archive.join("a.csv").exists(), "moved after the upload");

    std::fs::write(remote.join("b.csv"), "id\n2\n").unwrap();
    std::fs::write(&path, format!("{toml}after_upload = \"delete\"\n")).unwrap();
    let out = sync(&path);
    assert!(out.status.success(), "{}", text(&out));
    assert!(!remote.join("b.csv").exists(), "deleted after the upload");
    let landed: Vec<String> = files(&lake).into_iter().filter(|f| f.ends_with(".csv")).collect();
    assert_eq!(landed.len(), 2, "{landed:?}");
}
