use anyhow::Context;
use clap::Parser;
use persister::config::{Cli, Command};

/// See [`shared::alloc`] for why jemalloc.
#[global_allocator]
static ALLOCATOR: shared::alloc::Allocator = shared::alloc::Allocator;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    cli.config.log.init();
    shared::alloc::purge_in_background();
    match cli.command {
        Some(Command::Migrate) => persister::migrate_only(&cli.config).await,
        Some(Command::Replay(range)) => persister::replay::run(&cli.config, &range).await.map(drop),
        None => {
            let addr = cli.config.persister_addr;
            let listener = shared::net::listen(addr)
                .with_context(|| format!("binding PERSISTER_ADDR {addr}"))?;
            tracing::info!(%addr, "persister listening for health and metrics");
            persister::run(cli.config, listener, shared::shutdown::signal()).await
        }
    }
}
