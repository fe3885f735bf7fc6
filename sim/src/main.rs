fn main() {
    std::process::exit(shardcast_sim::cli::main());
}
