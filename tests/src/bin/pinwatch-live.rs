//! `pinwatch live` for the live-capture tests (`tests/live.rs`): the same
//! entry point as the `live` subcommand of the `pinwatch` binary, built by
//! this package so its integration tests can find it.

fn main() -> std::process::ExitCode {
    pinwatch::live::main_from_args(std::env::args_os())
}
