//! The `ragd` binary: everything lives in the library; see `ragd::cli`.

fn main() -> std::process::ExitCode {
    ragd::cli::main()
}
