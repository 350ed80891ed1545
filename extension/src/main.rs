//! The `contrail` executable: everything happens in the library's [`contrail::main`].

fn main() -> std::process::ExitCode {
    contrail::main()
}
