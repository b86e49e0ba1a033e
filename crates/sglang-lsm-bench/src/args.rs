//! Command-line options shared by every `bench` mode.

use std::path::PathBuf;

use clap::Args;

use crate::units::parse_bytes;

/// Options every `bench` mode takes.
#[derive(Args, Clone, Debug)]
pub struct CommonArgs {
    /// Working directory on the disk under test (a fresh subdirectory is created and
    /// removed). Not tmpfs: the device limit uses O_DIRECT.
    #[arg(long, default_value = "bench-out")]
    pub dir: PathBuf,
    /// Page sizes.
    #[arg(long, value_delimiter = ',', default_value = "128k,1m,8m", value_parser = parse_bytes)]
    pub page_sizes: Vec<u64>,
    /// Bytes written per store and page size (and by each device-limit measurement).
    #[arg(long, default_value = "256m", value_parser = parse_bytes)]
    pub bytes: u64,
    /// Write the results as JSON to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
}
