//! `fhir-ws`: run the whole stack locally (`serve`), subscribe and print notifications
//! (`subscribe`), or send an event (`notify`). See `fhir_ws_local::cli`.

fn main() -> std::process::ExitCode {
    fhir_ws_local::cli::main()
}
