//! `streamfleet instance …`: the compute layer for a service user. So far: the image catalogue.

/// Instance commands.
#[derive(clap::Subcommand)]
pub enum InstanceCmd {
    /// The image catalogue: each image's OS and the hypervisors that run it.
    Images {
        /// As JSON: `[{"name", "os", "hypervisors"}]`.
        #[arg(long)]
        json: bool,
    },
}

pub fn run(cmd: InstanceCmd) -> anyhow::Result<()> {
    match cmd {
        InstanceCmd::Images { json: true } => {
            println!(
                "{}",
                serde_json::to_string(&streamfleet_domain::image::CATALOGUE)?
            );
        }
        InstanceCmd::Images { json: false } => {
            for image in streamfleet_domain::image::CATALOGUE {
                let hypervisors: Vec<&str> = image.hypervisors.iter().map(|h| h.name()).collect();
                println!(
                    "{:<16} {:<8} {:<12} {}",
                    image.name,
                    image.os,
                    hypervisors.join(","),
                    image.about
                );
            }
        }
    }
    Ok(())
}
