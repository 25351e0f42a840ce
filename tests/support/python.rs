//! `tests/tools/observe_check.py`, run with the venv `make observe-py` builds under target/:
//! prometheus_client's text parser and jsonschema's validator.
#![allow(dead_code)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// The venv's interpreter; missing, the test fails and says how to make it.
fn python() -> PathBuf {
    let python = Path::new(ROOT).join("target/observe-py/bin/python");
    assert!(
        python.exists(),
        "{} is missing: run `make observe-py` (make test does)",
        python.display()
    );
    python
}

/// Runs `tests/tools/observe_check.py ARGS` on `input`: its stdout.
pub fn check_tool(args: &[&str], input: &str) -> String {
    let tool = Path::new(ROOT).join("tests/tools/observe_check.py");
    let mut child = Command::new(python())
        .arg(tool)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run observe_check.py");
    let mut stdin = child.stdin.take().expect("stdin");
    stdin.write_all(input.as_bytes()).expect("write input");
    drop(stdin);
    let out = child.wait_with_output().expect("observe_check.py output");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "observe_check.py {args:?}: {stderr}");
    String::from_utf8(out.stdout).expect("UTF-8 output")
}

/// Validates every one of `lines` against `docs/access-log.schema.json`.
pub fn validate_access_log(lines: &[String]) {
    let schema = Path::new(ROOT).join("docs/access-log.schema.json");
    let schema = schema.to_str().expect("UTF-8 path");
    let valid = check_tool(&["validate", schema], &(lines.join("\n") + "\n"));
    assert_eq!(
        valid.trim(),
        lines.len().to_string(),
        "every line validated"
    );
}
