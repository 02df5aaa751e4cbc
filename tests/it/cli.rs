//! The `happystreams` binary as a user runs it.

use crate::debezium_fixtures::{FOLDERS, fixture_dir};
use serde_json::Value as Json;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub fn happystreams() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_happystreams"));
    command.env("RUST_LOG", "warn").env_remove("HAPPYSTREAMS_CONFIG");
    command
}

pub fn run(args: &[&str]) -> Output {
    happystreams().args(args).output().expect("run happystreams")
}

pub fn json_lines(output: &Output) -> Vec<Json> {
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON line ({e}): {l}")))
        .collect()
}

fn value_files(folder: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(fixture_dir(folder).join("records"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap().to_string_lossy().contains(".value."))
        .collect();
    files.sort();
    files
}

#[test]
fn help_describes_every_command() {
    for args in [
        vec!["--help"],
        vec!["decode", "--help"],
        vec!["demo", "--help"],
        vec!["registry", "serve", "--help"],
        vec!["schemas", "register", "--help"],
        vec!["schemas", "check", "--help"],
    ] {
        let output = run(&args);
        assert!(output.status.success(), "{args:?}: {}", String::from_utf8_lossy(&output.stderr));
        assert!(String::from_utf8_lossy(&output.stdout).contains("Usage"), "{args:?}");
    }
}

#[test]
fn decode_prints_every_fixture_file_as_a_change_record() {
    for folder in FOLDERS {
        let files = value_files(folder);
        let format = if folder.starts_with("json-schemas") { "json-schema" } else { "json" };
        let mut args = vec!["decode".to_string(), "--debezium".into(), "--format".into(), format.into()];
        for f in &files {
            args.push("--file".into());
            args.push(f.display().to_string());
        }
        let output = happystreams().args(&args).output().unwrap();
        assert!(output.status.success(), "{folder}: {}", String::from_utf8_lossy(&output.stderr));
        let lines = json_lines(&output);
        assert_eq!(lines.len(), files.len(), "{folder}");
        for line in &lines {
            assert!(line.get("error").is_none(), "{folder}: {line}");
        }
        let kinds = |kind: &str| lines.iter().filter(|l| l["event"]["kind"] == kind).count();
        assert_eq!(kinds("tombstone"), 5, "{folder}: five deletes, five tombstones");
        let update = lines
            .iter()
            .find(|l| l["event"]["op"] == "update" && l["topic"] == "happytimes.public.content")
            .expect("content update");
        assert_eq!(update["event"]["after"]["body"], "__debezium_unavailable_value");
        assert_eq!(update["event"]["after"]["title"], "Happy Cats (Remastered)");
        let delete = lines
            .iter()
            .find(|l| l["event"]["op"] == "delete" && l["topic"] == "happytimes.public.ads")
            .expect("ad delete");
        assert_eq!(delete["event"]["before_key_only"], true);
        assert_eq!(delete["event"]["before"], serde_json::json!({"ad_id": 10}));
    }
}

#[test]
fn decode_reads_jsonl_dumps_with_typed_values() {
    let path = fixture_dir("json-schemas-precise").join("records.jsonl");
    let output = run(&["decode", "--debezium", "--format", "json-schema", "--jsonl", path.to_str().unwrap()]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let lines = json_lines(&output);
    assert_eq!(lines.len(), 54);
    let alice = &lines[4];
    assert_eq!((alice["topic"].as_str(), alice["offset"].as_i64()), (Some("happytimes.public.visitors"), Some(5)));
    assert_eq!(alice["event"]["after"]["lifetime_value"], "1234.50", "decimals print exactly");
    assert_eq!(alice["event"]["after"]["first_seen"], "2024-01-15T08:30:00.123456Z");
    assert_eq!(alice["event"]["after"]["birth_date"], "1990-05-17");
}

#[test]
fn decode_reports_bad_records_and_keeps_going() {
    let dir = tempfile::tempdir().unwrap();
    let garbage = dir.path().join("garbage.bin");
    std::fs::write(&garbage, [0xff, 0x00, 0x13, 0x37]).unwrap();
    let missing_op = dir.path().join("missing-op.json");
    std::fs::write(&missing_op, br#"{"before": null, "after": {"id": 1}}"#).unwrap();
    let good = value_files("json-plain-precise").into_iter().next().unwrap();
    let output = run(&[
        "decode",
        "--debezium",
        "--file",
        garbage.to_str().unwrap(),
        "--file",
        missing_op.to_str().unwrap(),
        "--file",
        good.to_str().unwrap(),
    ]);
    assert_eq!(output.status.code(), Some(1), "bad records make the exit status non-zero");
    let lines = json_lines(&output);
    assert_eq!(lines.len(), 3);
    assert_eq!(lines[0]["error"]["class"], "data");
    let message = lines[0]["error"]["message"].as_str().unwrap();
    assert!(message.contains("not valid UTF-8") && message.contains("garbage.bin"), "{message}");
    assert!(lines[1]["error"]["message"].as_str().unwrap().contains("required field `op` is missing"), "{}", lines[1]);
    assert_eq!(lines[2]["event"]["op"], "read");
    assert!(String::from_utf8_lossy(&output.stderr).contains("2 of 3 records failed"));

    let mixed =
        run(&["decode", "--debezium", "--format", "json", "--key-format", "avro", "--file", good.to_str().unwrap()]);
    assert_eq!(mixed.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&mixed.stderr).contains("drop --key-format"),
        "{}",
        String::from_utf8_lossy(&mixed.stderr)
    );

    let no_input = run(&["decode"]);
    assert_eq!(no_input.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&no_input.stderr).contains("give --file, --jsonl or --topic"));
}

#[test]
fn decode_avro_offline_with_a_schema_file() {
    use happystreams::codec::avro::AvroSchema;
    use happystreams::generate::ClickGenerator;
    let schema_path = Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas/happytimes.clicks-value.avsc");
    let schema = AvroSchema::parse(42, &std::fs::read_to_string(&schema_path).unwrap()).unwrap();
    let click = ClickGenerator::new(3).click(0);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("click.avro");
    std::fs::write(&file, schema.encode(&click).unwrap()).unwrap();
    let output = run(&[
        "decode",
        "--format",
        "avro",
        "--schema",
        schema_path.to_str().unwrap(),
        "--file",
        file.to_str().unwrap(),
    ]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert_eq!(json_lines(&output)[0]["value"], click.to_json());
}

/// A `happystreams registry serve` process, killed on drop.
pub struct Server(pub Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn serve(data_dir: &Path) -> (Server, String) {
    serve_on(data_dir, std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port())
}

/// `happystreams registry serve` with its data in `data_dir`, on loopback port `port`, once it
/// listens; returns it and its URL.
pub fn serve_on(data_dir: &Path, port: u16) -> (Server, String) {
    let listen = format!("127.0.0.1:{port}");
    let child = happystreams()
        .args(["registry", "serve", "--listen", &listen, "--data-dir", data_dir.to_str().unwrap()])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(&listen).is_err() {
        assert!(Instant::now() < deadline, "registry did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    (Server(child), format!("http://{listen}"))
}

#[test]
fn schemas_register_and_check_against_a_served_registry_that_restarts() {
    let data = tempfile::tempdir().unwrap();
    let schemas = Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas");
    let (server, url) = serve(data.path());
    let registered = run(&["schemas", "register", "--dir", schemas.to_str().unwrap(), "--registry", &url]);
    assert!(registered.status.success(), "{}", String::from_utf8_lossy(&registered.stderr));
    let stdout = String::from_utf8_lossy(&registered.stdout).to_string();
    assert!(stdout.contains("happytimes.clicks-value\tid "), "{stdout}");
    let checked = run(&["schemas", "check", "--dir", schemas.to_str().unwrap(), "--registry", &url]);
    assert!(checked.status.success());
    assert!(String::from_utf8_lossy(&checked.stdout).contains("happytimes.clicks-value\tcompatible"));
    drop(server);

    // Restarted on the same directory: same subjects, same ids.
    let (_server, url) = serve(data.path());
    let again = run(&["schemas", "register", "--dir", schemas.to_str().unwrap(), "--registry", &url]);
    assert_eq!(String::from_utf8_lossy(&again.stdout), stdout, "ids are stable across restarts");

    // An incompatible change (a new field without a default) fails the check.
    let evolved = tempfile::tempdir().unwrap();
    let mut click: Json =
        serde_json::from_str(&std::fs::read_to_string(schemas.join("happytimes.clicks-value.avsc")).unwrap()).unwrap();
    click["fields"].as_array_mut().unwrap().push(serde_json::json!({"name": "required_new", "type": "string"}));
    std::fs::write(evolved.path().join("happytimes.clicks-value.avsc"), click.to_string()).unwrap();
    let checked = run(&["schemas", "check", "--dir", evolved.path().to_str().unwrap(), "--registry", &url]);
    assert!(!checked.status.success());
    let out = String::from_utf8_lossy(&checked.stdout);
    assert!(out.contains("INCOMPATIBLE") && out.contains("required_new"), "{out}");
    let registered = run(&["schemas", "register", "--dir", evolved.path().to_str().unwrap(), "--registry", &url]);
    assert!(!registered.status.success());
    assert!(
        String::from_utf8_lossy(&registered.stderr).contains("incompatible"),
        "{}",
        String::from_utf8_lossy(&registered.stderr)
    );
}

#[test]
fn schemas_register_explains_an_unreachable_registry() {
    let schemas = Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas");
    let output = run(&["schemas", "register", "--dir", schemas.to_str().unwrap(), "--registry", "http://127.0.0.1:9"]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("unreachable") || stderr.contains("rejected"), "{stderr}");
}

#[test]
fn demo_runs_with_no_external_service() {
    let lake = tempfile::tempdir().unwrap();
    let lake_dir = lake.path().to_str().unwrap();
    let output = run(&[
        "demo",
        "--visitors",
        "40",
        "--days",
        "14",
        "--rate",
        "0",
        "--live-days",
        "0",
        "--http-address",
        "127.0.0.1:0",
        "--lake",
        lake_dir,
    ]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("happytimes.clicks-value (id 1)"), "the registry took the schemas: {stdout}");
    assert!(stdout.contains("Prometheus metrics at http://127.0.0.1:"), "{stdout}");
    // Every funnel line is printed, with values from the generated traffic.
    for line in ["awareness ", "consideration ", "conversion ", "loyalty ", "advocacy ", "facts "] {
        assert!(stdout.lines().any(|l| l.starts_with(line)), "no `{line}` line: {stdout}");
    }
    assert!(stdout.contains("cohort week (size): retention in weeks 0-3: 2026-11-02 ("), "{stdout}");
    assert!(stdout.contains("all generated traffic processed"), "{stdout}");
    // The facts counted on the board are the rows landed in the lake.
    let facts_line = stdout.lines().rev().find(|l| l.starts_with("facts ")).unwrap();
    let counted: i64 = facts_line
        .split(" · ")
        .filter(|part| !part.contains("rejected"))
        .filter_map(|part| part.rsplit(' ').next()?.parse::<i64>().ok())
        .sum();
    let mut rows = 0;
    let mut stack = vec![lake.path().join("facts")];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "parquet") {
                let reader =
                    parquet::file::serialized_reader::SerializedFileReader::new(std::fs::File::open(&path).unwrap())
                        .unwrap();
                rows += parquet::file::reader::FileReader::metadata(&reader).file_metadata().num_rows();
            }
        }
    }
    assert!(counted > 0 && rows == counted, "{rows} rows in the lake, {counted} facts on the board: {facts_line}");
    assert!(stdout.contains(&format!("{counted} fact records landed as Parquet in {lake_dir}/facts/")), "{stdout}");
}
