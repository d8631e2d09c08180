fn main() {
    std::process::exit(mend::cli::main());
}
