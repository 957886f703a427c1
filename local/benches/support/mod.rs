//! What the local stack's benchmarks share: `fhir-ws serve` as a child process, its
//! memory as the kernel reports it, and percentiles.

#![allow(dead_code, reason = "each benchmark includes this module and uses a part of it")]

use std::io::{BufRead as _, BufReader};
use std::os::unix::process::CommandExt as _;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// `fhir-ws serve` on a free port, killed when dropped.
pub struct Server {
    child: Child,
    /// `http://127.0.0.1:<port>`, from the banner's first line.
    pub base: String,
}

impl Server {
    /// Starts the server with `args` after `serve --port 0` and waits for its banner.
    /// `BENCH_SERVER_WRAPPER` (for example `heaptrack` or `perf record -g --`) runs it
    /// under a profiler; the memory figures are then the wrapper's.
    pub fn start(args: &[String]) -> Self {
        let wrapper = std::env::var("BENCH_SERVER_WRAPPER").unwrap_or_default();
        let mut command = match wrapper.split_whitespace().collect::<Vec<_>>().split_first() {
            Some((program, wrapper_args)) => {
                let mut command = Command::new(program);
                command.args(wrapper_args).arg(env!("CARGO_BIN_EXE_fhir-ws"));
                command
            }
            None => Command::new(env!("CARGO_BIN_EXE_fhir-ws")),
        };
        let mut child = command
            // Its own process group, so that a wrapper's child is stopped with it.
            .process_group(0)
            .args(["serve", "--port", "0"])
            .args(args)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .spawn()
            .expect("start fhir-ws serve");
        let mut output = BufReader::new(child.stdout.take().expect("stdout"));
        // The banner's first line ends with the address (a wrapper may print before it).
        let mut banner = String::new();
        while !banner.contains("http://") {
            banner.clear();
            assert!(output.read_line(&mut banner).expect("banner") > 0, "the server stopped before its banner");
        }
        // Keep draining the server's stdout (banner, metrics lines) so it never blocks.
        std::thread::spawn(move || std::io::copy(&mut output, &mut std::io::sink()));
        let base = banner.trim().rsplit(' ').next().expect("address").to_owned();
        Self { child, base }
    }

    /// The server's resident memory now (`VmRSS`), MiB.
    pub fn rss_mib(&self) -> f64 {
        self.status_mib("VmRSS:")
    }

    /// The server's peak resident memory so far (`VmHWM`), MiB.
    pub fn peak_rss_mib(&self) -> f64 {
        self.status_mib("VmHWM:")
    }

    fn status_mib(&self, field: &str) -> f64 {
        std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default()
            .lines()
            .find_map(|line| line.strip_prefix(field))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
            .map_or(0.0, |kib| kib / 1024.0)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // SIGTERM to the whole group: the server shuts down, a profiler writes its data.
        let group = format!("-{}", self.child.id());
        let stopped = Command::new("kill").args(["-TERM", "--", &group]).status().is_ok_and(|s| s.success());
        if !stopped {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

/// The `p` quantile (0..=1) of an ascending slice, nearest rank.
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(index).copied().unwrap_or_default()
}

/// Milliseconds, for printing.
pub fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1e3
}

/// A size from the environment variable `name`, else `default`.
pub fn setting(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}
