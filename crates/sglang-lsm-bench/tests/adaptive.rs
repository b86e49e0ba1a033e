//! The controller evaluation runs end to end on a tiny workload: every configuration, every
//! phase, every page read back exact (a miss or wrong byte fails the run).

use clap::Parser;
use sglang_lsm_bench::adaptive::{evaluate, AdaptiveArgs, PHASES};

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    args: AdaptiveArgs,
}

#[test]
fn every_configuration_runs_every_phase() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cli = Cli::parse_from([
        "t",
        "--dir",
        dir.path().to_str().expect("utf-8 path"),
        "--preload-prompts",
        "50",
        "--phase-ops",
        "200",
        "--pages-per-prompt",
        "4",
    ]);
    let report = evaluate(&cli.args).expect("evaluation");
    assert_eq!(report.phases.len(), 4 * PHASES.len());
    assert_eq!(report.overall_ops_per_s.len(), 4);
    for p in &report.phases {
        assert!(p.ops_per_s.is_finite() && p.ops_per_s > 0.0, "{p:?}");
    }
    let err = evaluate(&AdaptiveArgs {
        configs: vec!["fastest".into()],
        ..cli.args.clone()
    })
    .expect_err("unknown configuration");
    assert!(err.to_string().contains("fastest"), "{err}");
}
