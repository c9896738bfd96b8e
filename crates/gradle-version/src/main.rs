fn main() -> std::process::ExitCode {
    bg_core::main::<gradle_version::Cli>()
}
