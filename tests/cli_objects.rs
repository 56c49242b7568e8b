//! End-to-end tests of `sluice upload` and `sluice objects`, run on the built binary against a
//! real `sluice serve` on 127.0.0.1 with the built-in configuration.

mod support;

use std::path::Path;
use std::process::{Command, Stdio};

use serde_json::Value;
use support::TestServer;

struct Run {
    code: Option<i32>,
    stdout: Vec<u8>,
    stderr: String,
}

impl Run {
    fn stdout_text(&self) -> String {
        String::from_utf8(self.stdout.clone()).expect("stdout is UTF-8")
    }
}

fn sluice(args: &[&str]) -> Run {
    let output = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(args)
        .env_remove("SLUICE_SERVER")
        .stdin(Stdio::null())
        .output()
        .expect("sluice runs");
    Run {
        code: output.status.code(),
        stdout: output.stdout,
        stderr: String::from_utf8(output.stderr).expect("stderr is UTF-8"),
    }
}

/// Runs `sluice` with `--server` pointing at `server` and asserts exit status 0.
fn sluice_ok(server: &TestServer, args: &[&str]) -> Run {
    let mut all = args.to_vec();
    all.extend(["--server", server.url()]);
    let run = sluice(&all);
    assert_eq!(run.code, Some(0), "{args:?} failed; stderr: {}", run.stderr);
    run
}

/// Returns the `objects list --json` lines of a bucket, parsed.
fn list_json(server: &TestServer, bucket: &str, extra: &[&str]) -> Vec<Value> {
    let mut args = vec!["objects", "list", bucket, "--json"];
    args.extend(extra);
    sluice_ok(server, &args)
        .stdout_text()
        .lines()
        .map(|line| serde_json::from_str(line).expect("each line is JSON"))
        .collect()
}

fn path_arg(path: &Path) -> &str {
    path.to_str().expect("the temporary path is UTF-8")
}

#[test]
fn objects_round_trip() {
    let server = TestServer::start(None);
    let folder = tempfile::tempdir().expect("temp dir");
    let photo = folder.path().join("photo.jpg");
    let notes = folder.path().join("notes.txt");
    let photo_bytes: Vec<u8> = (0..=255u8).cycle().take(5000).collect();
    std::fs::write(&photo, &photo_bytes).expect("write photo");
    std::fs::write(&notes, b"first notes\n").expect("write notes");

    let uploaded = sluice_ok(
        &server,
        &[
            "upload",
            path_arg(&photo),
            path_arg(&notes),
            "--bucket",
            "uploads",
        ],
    );
    let lines: Vec<Vec<String>> = uploaded
        .stdout_text()
        .lines()
        .map(|line| line.split('\t').map(str::to_owned).collect())
        .collect();
    assert_eq!(lines.len(), 2, "one line per file: {lines:?}");
    assert_eq!(lines[0][0], "photo.jpg", "named after the file");
    assert_eq!(lines[0][2], "5000", "size");
    assert!(lines[0][1].parse::<i64>().is_ok(), "generation: {lines:?}");
    assert_eq!(lines[1][0], "notes.txt");
    assert_eq!(lines[1][2], "12");

    let renamed = sluice_ok(
        &server,
        &[
            "upload",
            path_arg(&notes),
            "--bucket",
            "uploads",
            "--name",
            "docs/readme",
        ],
    );
    assert!(
        renamed.stdout_text().starts_with("docs/readme\t"),
        "{}",
        renamed.stdout_text()
    );

    let objects = list_json(&server, "uploads", &[]);
    let names: Vec<&str> = objects
        .iter()
        .map(|object| object["name"].as_str().expect("name"))
        .collect();
    assert_eq!(
        names,
        ["docs/readme", "notes.txt", "photo.jpg"],
        "sorted by name"
    );
    let photo_object = &objects[2];
    assert_eq!(photo_object["kind"], "storage#object");
    assert_eq!(
        photo_object["contentType"], "image/jpeg",
        "guessed from the extension"
    );
    assert_eq!(photo_object["size"], "5000");
    assert_eq!(objects[1]["contentType"], "text/plain");
    assert_eq!(
        list_json(&server, "uploads", &["--prefix", "docs/"]).len(),
        1,
        "--prefix filters"
    );

    let table = sluice_ok(&server, &["objects", "list", "uploads"]).stdout_text();
    let rows: Vec<Vec<&str>> = table
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(
        rows[0],
        ["NAME", "SIZE", "GENERATION", "CONTENT", "TYPE", "UPDATED"]
    );
    assert_eq!(rows.len(), 4, "header and three rows: {table}");
    assert_eq!(rows[3][..2], ["photo.jpg", "5000"]);

    let copy = folder.path().join("copy.jpg");
    sluice_ok(
        &server,
        &[
            "objects",
            "get",
            "uploads",
            "photo.jpg",
            "-o",
            path_arg(&copy),
        ],
    );
    assert_eq!(
        std::fs::read(&copy).expect("read copy"),
        photo_bytes,
        "bytes round-trip"
    );
    let to_stdout = sluice_ok(
        &server,
        &["objects", "get", "uploads", "docs/readme", "-o", "-"],
    );
    assert_eq!(to_stdout.stdout, b"first notes\n", "-o - writes to stdout");

    let patched = sluice_ok(
        &server,
        &[
            "objects",
            "patch",
            "uploads",
            "photo.jpg",
            "--set",
            "owner=ada",
            "--set",
            "tag=a=b",
            "--content-type",
            "image/png",
        ],
    );
    let object: Value = serde_json::from_slice(&patched.stdout).expect("patch prints JSON");
    assert_eq!(object["metadata"]["owner"], "ada");
    assert_eq!(object["metadata"]["tag"], "a=b", "the value keeps its `=`");
    assert_eq!(object["contentType"], "image/png");
    assert_eq!(object["metageneration"], "2");
    let unset = sluice_ok(
        &server,
        &[
            "objects",
            "patch",
            "uploads",
            "photo.jpg",
            "--unset",
            "owner",
        ],
    );
    let object: Value = serde_json::from_slice(&unset.stdout).expect("patch prints JSON");
    assert!(
        object["metadata"].get("owner").is_none(),
        "owner removed: {object}"
    );
    assert_eq!(object["metadata"]["tag"], "a=b", "other keys stay");

    let deleted = sluice_ok(&server, &["objects", "delete", "uploads", "photo.jpg"]);
    assert_eq!(deleted.stdout_text(), "deleted photo.jpg\n");
    let names: Vec<Value> = list_json(&server, "uploads", &[])
        .into_iter()
        .map(|object| object["name"].clone())
        .collect();
    assert_eq!(names, ["docs/readme", "notes.txt"], "photo.jpg is gone");

    let missing_object = sluice(&[
        "objects",
        "get",
        "uploads",
        "photo.jpg",
        "-o",
        path_arg(&copy),
        "--server",
        server.url(),
    ]);
    assert_eq!(
        missing_object.code,
        Some(1),
        "stderr: {}",
        missing_object.stderr
    );
    let stderr = &missing_object.stderr;
    assert!(stderr.contains("NOT_FOUND (HTTP 404)"), "status: {stderr}");
    assert!(
        stderr.contains("\"photo.jpg\""),
        "the server's message: {stderr}"
    );
    assert_eq!(
        std::fs::read(&copy).expect("read copy"),
        photo_bytes,
        "a failed download leaves the file alone"
    );
    assert!(server.stop().success(), "server exits cleanly");
}

#[test]
fn object_errors_print_server_message() {
    let server = TestServer::start(None);
    let folder = tempfile::tempdir().expect("temp dir");
    let file = folder.path().join("a.txt");
    std::fs::write(&file, b"a").expect("write file");

    let missing_bucket = sluice(&[
        "upload",
        path_arg(&file),
        "--bucket",
        "nope",
        "--server",
        server.url(),
    ]);
    assert_eq!(
        missing_bucket.code,
        Some(1),
        "stderr: {}",
        missing_bucket.stderr
    );
    let stderr = &missing_bucket.stderr;
    assert!(stderr.starts_with("error: upload of "), "{stderr}");
    assert!(
        stderr.contains("NOT_FOUND (HTTP 404): bucket \"nope\" not found"),
        "{stderr}"
    );
    assert!(
        missing_bucket.stdout.is_empty(),
        "nothing printed on stdout"
    );

    let bad_name = sluice(&[
        "upload",
        path_arg(&file),
        "--bucket",
        "uploads",
        "--name",
        "a\nb",
        "--server",
        server.url(),
    ]);
    assert_eq!(bad_name.code, Some(1), "stderr: {}", bad_name.stderr);
    let stderr = &bad_name.stderr;
    assert!(stderr.contains("INVALID_ARGUMENT (HTTP 400)"), "{stderr}");
    assert!(stderr.contains("line feed"), "names the rule: {stderr}");

    let delete_missing = sluice(&[
        "objects",
        "delete",
        "uploads",
        "never-uploaded",
        "--server",
        server.url(),
    ]);
    assert_eq!(
        delete_missing.code,
        Some(1),
        "stderr: {}",
        delete_missing.stderr
    );
    assert!(
        delete_missing.stderr.contains("NOT_FOUND"),
        "{}",
        delete_missing.stderr
    );
    assert!(server.stop().success(), "server exits cleanly");
}

#[test]
fn invalid_object_arguments_exit_2() {
    let cases: [&[&str]; 4] = [
        &["upload", "a", "b", "--bucket", "uploads", "--name", "x"],
        &["objects", "patch", "uploads", "x"],
        &[
            "objects", "patch", "uploads", "x", "--set", "k=1", "--unset", "k",
        ],
        &["objects", "get", "uploads", "x"],
    ];
    for args in cases {
        let run = sluice(args);
        assert_eq!(run.code, Some(2), "{args:?}: {}", run.stderr);
        assert!(
            run.stderr.starts_with("error: "),
            "{args:?}: {}",
            run.stderr
        );
        assert!(run.stdout.is_empty(), "{args:?} prints nothing on stdout");
    }
}

#[test]
fn unreachable_server_hints_at_serve() {
    // Bind a port and release it, so nothing listens there.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    let url = format!("http://{}", listener.local_addr().expect("local address"));
    drop(listener);
    let run = sluice(&["objects", "list", "uploads", "--server", &url]);
    assert_eq!(run.code, Some(1), "stderr: {}", run.stderr);
    assert!(
        run.stderr.contains(&format!("cannot reach {url}")),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr
            .contains("hint: start a server with `sluice serve`"),
        "{}",
        run.stderr
    );
}
