use clap::Subcommand;
#[derive(Subcommand)]
pub enum Which {
    Log,
}
pub async fn run(_w: Which) -> anyhow::Result<()> {
    Ok(())
}
