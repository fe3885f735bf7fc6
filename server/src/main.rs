//! `shardcast-server`: see `--help`. With no flags it listens on 127.0.0.1:6379 and keeps its
//! data in `./shardcast-data`.

use clap::Parser;

fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("SHARDCAST_LOG")
                .unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let flags = shardcast_server::config::Flags::parse();
    let config = match shardcast_server::config::ServerConfig::load(flags) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("shardcast-server: {e}");
            std::process::exit(2);
        }
    };
    if let Err(e) = shardcast_server::run(config) {
        eprintln!("shardcast-server: {e}");
        std::process::exit(1);
    }
}
