//! `fhir-ws serve` as a process: SIGTERM (what a container runtime or service manager
//! sends) stops it cleanly, as Ctrl-C does.

use std::io::{BufRead as _, BufReader, Read as _};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[test]
fn sigterm_stops_the_server_cleanly() {
    let mut server = Command::new(env!("CARGO_BIN_EXE_fhir-ws"))
        .args(["serve", "--port", "0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut banner = String::new();
    BufReader::new(server.stdout.take().unwrap()).read_line(&mut banner).unwrap();
    assert!(banner.contains("http://127.0.0.1:"), "{banner}");

    let signalled = Command::new("kill").args(["-TERM", &server.id().to_string()]).status().unwrap();
    assert!(signalled.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = server.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "still running 10 s after SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut stderr = String::new();
    server.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
    assert!(status.success(), "exit {status:?}; stderr: {stderr}");
    assert!(stderr.contains("fhir-ws: stopping"), "{stderr}");
}
