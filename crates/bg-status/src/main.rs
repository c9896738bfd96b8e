fn main() -> std::process::ExitCode {
    bg_core::main::<bg_status::Cli>()
}
