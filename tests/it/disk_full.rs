//! A state directory whose disk fills up mid-stream: the instance says what happened and where,
//! does not take the full disk for corrupt state (nothing is moved aside), and once space is
//! freed a restart finishes the input with nothing lost.
//!
//! The disk is a small tmpfs mounted over the instance's state directory (root only; CI runs
//! as root, elsewhere the test says it cannot run and passes only outside CI).

use crate::rig::tansu;
use crate::runtime::{Instance, Setup, oracle, outputs, produce_clicks, produce_visitors};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// A tmpfs of `megabytes` mounted at `dir` (unmounted on drop).
struct SmallDisk(std::path::PathBuf);

impl SmallDisk {
    fn mount(dir: &Path, megabytes: u32) -> Option<SmallDisk> {
        std::fs::create_dir_all(dir).unwrap();
        let mounted = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={megabytes}m"), "tmpfs"])
            .arg(dir)
            .output()
            .ok()?;
        mounted.status.success().then(|| SmallDisk(dir.to_owned()))
    }

    /// Writes a file of zeros (`name`) until the disk is full; returns its path.
    fn fill(&self, name: &str) -> std::path::PathBuf {
        let filler = self.0.join(name);
        let _ = Command::new("dd").args(["if=/dev/zero", "bs=64k"]).arg(format!("of={}", filler.display())).output();
        filler
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_full_disk_stops_the_instance_with_advice_and_a_restart_after_freeing_space_loses_nothing() {
    let setup = Setup::on(tansu(), "rt_disk_full", "dead_letter", 2).await;
    let Some(disk) = SmallDisk::mount(&setup.dir.path().join("only"), 256) else {
        assert!(std::env::var_os("CI").is_none(), "CI runs as root and must be able to mount a tmpfs");
        eprintln!("cannot mount a tmpfs here (not root?): the full-disk test needs one");
        return;
    };
    produce_visitors(&setup, 0).await;
    let one = ["--num-threads", "1"];
    let mut instance = setup.start_with("only", &one, &[]);
    produce_clicks(&setup, 0..1_000).await;
    await_facts(&setup, 1_000, &instance);

    let filler = disk.fill("filler");
    produce_clicks(&setup, 1_000..20_000).await;
    let status = instance.exit_within(Duration::from_secs(120), "the instance kept running on a full disk");
    assert!(!status.success(), "a full disk is an error: {status}");
    let log = instance.log_text();
    let last = log.lines().rev().find(|l| l.contains("ERROR") || l.starts_with("error")).unwrap_or_default();
    assert!(last.contains("No space left on device") && last.contains("the disk is full: free space"), "{log}");
    assert!(last.contains(setup.dir.path().join("only").to_str().unwrap()), "names the directory: {last}");
    assert!(!log.contains("moved it aside"), "a full disk is no corruption:\n{log}");
    eprintln!("the instance on a full disk said: {last}");

    // Restarted while the disk is still full (what the instance freed as it stopped filled up
    // too): the same advice, and still nothing moved aside.
    let more = disk.fill("filler-2");
    let mut again = setup.start_with("only", &one, &[]);
    let status = again.exit_within(Duration::from_secs(120), "an instance started on a full disk kept running");
    let log = again.log_text();
    assert!(!status.success() && log.contains("the disk is full: free space"), "{log}");
    assert!(!log.contains("moved it aside"), "a full disk is no corruption:\n{log}");

    std::fs::remove_file(filler).unwrap();
    std::fs::remove_file(more).unwrap();
    let restarted = setup.start_with("only", &one, &[]);
    produce_clicks(&setup, 20_000..21_000).await;
    await_facts(&setup, 21_000, &restarted);
    let log = restarted.log_text();
    assert!(!log.contains("moved it aside"), "the state was kept:\n{log}");
    drop(disk);
}

/// Every fact of `clicks` clicks is on the output (at least once: some may repeat).
fn await_facts(setup: &Setup, clicks: i64, instance: &Instance) {
    let (want_facts, _) = oracle(clicks, 0);
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let (facts, _, _) = outputs(setup);
        if want_facts.is_subset(&facts) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{} of {} facts after 120 s; log:\n{}",
            want_facts.intersection(&facts).count(),
            want_facts.len(),
            instance.log_text()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}
