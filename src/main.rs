fn main() -> std::process::ExitCode {
    t37gw::cli::main()
}
