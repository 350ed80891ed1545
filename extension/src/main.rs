//! The `contrail` executable: everything happens in [`contrail::app`].

fn main() -> std::process::ExitCode {
    contrail::app::main()
}
