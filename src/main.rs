//! The `ats-gateway` binary: parses the command line and hands over to [`ats_gateway::cli`].

#[tokio::main]
async fn main() -> std::process::ExitCode {
    ats_gateway::cli::main().await
}
