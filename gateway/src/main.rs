use anyhow::Context;
use clap::Parser;
use gateway::config::Config;

/// See [`shared::alloc`] for why jemalloc.
#[global_allocator]
static ALLOCATOR: shared::alloc::Allocator = shared::alloc::Allocator;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = Config::parse();
    config.log.init();
    shared::alloc::purge_in_background();
    shared::net::install_tls_provider();
    let addr = config.gateway_addr;
    let listener =
        shared::net::listen(addr).with_context(|| format!("binding GATEWAY_ADDR {addr}"))?;
    tracing::info!(%addr, "gateway listening");
    gateway::run(config, listener, shared::shutdown::signal()).await
}
