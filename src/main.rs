use std::process::ExitCode;

fn main() -> ExitCode {
    shepherd::cli::main()
}
