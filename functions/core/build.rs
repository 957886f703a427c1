//! Compiles the SubscriptionTopic files of `infra/topics/` into the crate (see
//! `src/topics.rs`): the Lambda packages hold only the bootstrap binary, so topics deployed
//! with the stack travel inside it.

use std::fmt::Write as _;
use std::path::Path;

fn main() {
    let manifest = std::env::var("CARGO_MANIFEST_DIR").unwrap_or_default();
    let folder = Path::new(&manifest).join("../../infra/topics");
    println!("cargo:rerun-if-changed={}", folder.display());
    let mut files: Vec<_> = std::fs::read_dir(&folder)
        .map(|entries| entries.filter_map(Result::ok).map(|e| e.path()).collect())
        .unwrap_or_default();
    files.retain(|path| path.extension().is_some_and(|e| e == "json"));
    files.sort();
    let mut source = String::from("/// The topic files of `infra/topics/`: (file name, JSON text).\n");
    source.push_str("pub const TOPIC_FILES: &[(&str, &str)] = &[\n");
    for path in &files {
        println!("cargo:rerun-if-changed={}", path.display());
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        let absolute = std::fs::canonicalize(path).unwrap_or_else(|_| path.clone());
        let _ = writeln!(source, "    ({name:?}, include_str!({:?})),", absolute.display().to_string());
    }
    source.push_str("];\n");
    let out = std::env::var("OUT_DIR").unwrap_or_default();
    if let Err(error) = std::fs::write(Path::new(&out).join("topic_files.rs"), source) {
        println!("cargo:warning=cannot write the topic list: {error}");
        std::process::exit(1);
    }
}
