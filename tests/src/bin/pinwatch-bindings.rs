//! `pinwatch bindings` for the RADIUS and Kea tests (`tests/bindings.rs`):
//! the same entry point as the `bindings` subcommand of the `pinwatch`
//! binary, built by this package so its integration tests can find it.

fn main() -> std::process::ExitCode {
    pinwatch::enrich::bindings::main_from_args(std::env::args_os())
}
