//! The `ats-gateway` binary: parses the command line and hands over to [`ats_gateway::cli`].

/// mimalloc instead of glibc's malloc: a profile of the flat-list benchmark spent about a quarter
/// of the gateway's time in glibc's malloc and free (GraphQL execution allocates per field).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    ats_gateway::cli::main().await
}
