//! The guide's runnable examples: every ```` ```sh,runnable ```` block in `docs/src/*.md`
//! runs in `bash -euo pipefail` against `fhir-ws serve` started here, one shell per
//! chapter (later blocks see earlier blocks' variables), with the local stack's address
//! (`http://127.0.0.1:8080` in the text) replaced by this stack's, and the `fhir-ws`
//! binary cargo built for this run on `PATH` (the guide says to put `target/debug` there).
//! A command that fails or an expectation (`grep -q …`) that no longer holds fails the
//! test, so the guide cannot drift from what the code does.

use std::path::PathBuf;
use std::time::Duration;

use fhir_ws_local::gateway::Options;
use fhir_ws_tests::local::LocalStack;

/// The address the guide's examples are written for.
const WRITTEN_FOR: &str = "http://127.0.0.1:8080";

/// Each chapter's runnable blocks, joined: (chapter, script).
fn runnable_blocks() -> Vec<(String, String)> {
    let folder = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/src");
    let mut chapters: Vec<PathBuf> = std::fs::read_dir(&folder)
        .expect("docs/src")
        .map(|entry| entry.expect("a directory entry").path())
        .filter(|path| path.extension().is_some_and(|e| e == "md"))
        .collect();
    chapters.sort();
    let mut found = Vec::new();
    for chapter in chapters {
        let text = std::fs::read_to_string(&chapter).expect("a chapter");
        let (mut script, mut inside) = (String::new(), false);
        for line in text.lines() {
            if line.trim_start().starts_with("```") {
                inside = !inside && line.trim() == "```sh,runnable";
            } else if inside {
                script.push_str(line);
                script.push('\n');
            }
        }
        if !script.is_empty() {
            found.push((chapter.file_name().unwrap().to_string_lossy().into_owned(), script));
        }
    }
    found
}

/// The folder of this build's binaries (`target/debug`): this test runs from its `deps/`.
/// Cargo builds `fhir-ws` before the tests, for `local/tests/signals.rs`.
fn built_binaries() -> PathBuf {
    let exe = std::env::current_exe().expect("the test's path");
    let folder = exe.parent().and_then(|deps| deps.parent()).expect("target/<profile>/deps").to_path_buf();
    assert!(
        folder.join("fhir-ws").is_file(),
        "no fhir-ws binary in {}: run cargo build -p fhir-ws-local first",
        folder.display()
    );
    folder
}

#[tokio::test]
async fn the_guides_runnable_examples_run_against_the_local_stack() {
    let blocks = runnable_blocks();
    assert!(!blocks.is_empty(), "no ```sh,runnable block in docs/src: nothing would be checked");
    let binaries = built_binaries();
    let path = format!("{}:{}", binaries.display(), std::env::var("PATH").unwrap_or_default());
    let stack = LocalStack::start(Options::default()).await;
    for (chapter, script) in blocks {
        let script = script.replace(WRITTEN_FOR, &stack.base);
        let run = tokio::process::Command::new("bash")
            .args(["-euo", "pipefail", "-c", &script])
            .current_dir(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".."))
            .env("PATH", &path)
            .kill_on_drop(true)
            .output();
        let output = tokio::time::timeout(Duration::from_secs(60), run)
            .await
            .unwrap_or_else(|_| panic!("{chapter}: the examples did not finish within a minute"))
            .expect("bash");
        assert!(
            output.status.success(),
            "{chapter}: a runnable example failed ({}):\n--- script\n{script}\n--- stdout\n{}\n--- stderr\n{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    stack.stop().await;
}
