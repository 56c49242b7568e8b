//! Runs the Python scripts of `tests/python/` with the interpreter that `scripts/test`
//! installs Google's client libraries into.

use std::path::PathBuf;
use std::process::{Command, Output};

/// The variable that names the interpreter of the virtual environment `scripts/test` makes.
const PYTHON_VAR: &str = "SLUICE_TEST_PYTHON";

/// Returns the path of a script in `tests/python/`.
pub fn script(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/python")
        .join(name)
}

/// Returns the Python interpreter with the pinned clients.
///
/// # Panics
///
/// When `SLUICE_TEST_PYTHON` is not set. The test fails instead of being skipped, so that a
/// missing install cannot pass unnoticed.
pub fn interpreter() -> PathBuf {
    match std::env::var_os(PYTHON_VAR) {
        Some(path) if !path.is_empty() => PathBuf::from(path),
        _ => panic!(
            "{PYTHON_VAR} is not set: this test runs Google's Python clients, which \
             scripts/test installs; run scripts/test, or set {PYTHON_VAR} to a Python with \
             the packages of tests/python/requirements.txt"
        ),
    }
}

/// Runs `script` with `args` and `env` added, and returns its output.
pub fn run(script_name: &str, args: &[&str], env: &[(&str, &str)]) -> Output {
    let interpreter = interpreter();
    let mut command = Command::new(&interpreter);
    command.arg(script(script_name)).args(args);
    for (name, value) in env {
        command.env(name, value);
    }
    // The clients must reach only the local server.
    command.env("NO_PROXY", "127.0.0.1,localhost");
    command.output().unwrap_or_else(|err| {
        panic!(
            "failed to run {} with {}: {err}; run scripts/test to install it",
            script_name,
            interpreter.display()
        )
    })
}

/// Panics with the script's output unless it exited with status 0.
pub fn assert_success(script_name: &str, output: &Output) {
    assert!(
        output.status.success(),
        "{script_name} failed with {}\n--- stdout\n{}\n--- stderr\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}
