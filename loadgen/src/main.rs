fn main() {
    std::process::exit(shardcast_loadgen::cli::main());
}
