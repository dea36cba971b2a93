//! Binary entry point: everything lives in the library so tests and benches can reach it.

fn main() -> std::process::ExitCode {
    confluence_audit_forwarder::cli::main()
}
