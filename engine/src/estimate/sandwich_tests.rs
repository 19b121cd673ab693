//! The trust features of `estimate_log_z` end to end on model files, against exact ln Z:
//! the sandwich's coverage, the unreliable-error-bar warning and `target_stderr`.
//! Together they take ~6 s on one core (opt-level 3).

use super::job::{estimate_log_z, EstimateResult, EstimateSpec};
use super::job_tests::{lattice_file, rbm_file};
use super::tests::{random_potts, random_rbm};
use crate::backend::BackendKind;
use crate::error::EngineError;
use crate::tensors::TensorWriter;

/// Critical coupling of the square-lattice Ising model, ln(1 + sqrt 2) / 2.
const K_C: f32 = 0.440_686_8;

fn potts_file(sites: usize, q: usize, sd: f32, seed: u64) -> Vec<u8> {
    let p = random_potts(sites, q, sd, seed);
    let mut w = TensorWriter::new();
    w.add("J", &[sites, q, sites, q], &p.couplings).unwrap();
    w.add("h", &[sites, q], &p.fields).unwrap();
    w.meta("type", "potts");
    w.to_bytes().unwrap()
}

fn run(file: &[u8], spec: &EstimateSpec, seed: u64) -> Result<EstimateResult, EngineError> {
    estimate_log_z(
        file,
        spec,
        None,
        seed,
        BackendKind::Cpu,
        &|| false,
        &mut |_| {},
    )
}

fn exact(file: &[u8]) -> f64 {
    let spec = EstimateSpec {
        method: "exact".into(),
        ..Default::default()
    };
    run(file, &spec, 0).unwrap().log_z
}

/// Over 40 seeds, the sandwich bracket (forward's 95% lower end .. reverse's 95% upper
/// end) contains the exact ln Z at least 38 times on each small model. Why 38: each end
/// misses by noise with probability <= 2.5% where noise dominates (many chains, long
/// schedule) and less where the bias does (the bias pushes forward down and reverse up),
/// so misses ~ Binomial(40, <= 0.05): P(more than 2) <= 0.32 at the worst case p = 0.05
/// but far smaller at the p these runs have (16 chains x 100 betas: both ends are
/// bias-dominated, a miss needs a ~3-sigma event on one side).
#[test]
fn the_sandwich_brackets_exact_log_z_in_95_percent_of_40_runs() {
    let models = [
        ("rbm 10x4", rbm_file(&random_rbm(10, 4, 1.0, 5))),
        ("potts 5 sites q 3", potts_file(5, 3, 0.5, 6)),
        ("lattice 4x4 at K_c", lattice_file(4, K_C, 0.0)),
    ];
    let spec = EstimateSpec {
        method: "sandwich".into(),
        chains: Some(16),
        betas: Some(100),
        burn_in: Some(100),
        ..Default::default()
    };
    for (name, file) in &models {
        let truth = exact(file);
        let mut inside = 0;
        for seed in 0..40 {
            let r = run(file, &spec, seed).unwrap();
            let b = r.bracket.clone().expect("a sandwich has a bracket");
            assert!(b.lower <= b.point && b.point <= b.upper, "{name}: {b:?}");
            assert_eq!(
                (r.log_z_low, r.log_z, r.log_z_high),
                (b.lower, b.point, b.upper)
            );
            assert!(r.forward.is_some() && r.reverse.is_some());
            if b.lower <= truth && truth <= b.upper {
                inside += 1;
            }
        }
        assert!(inside >= 38, "{name}: {inside} of 40 brackets hold {truth}");
    }
}

/// The 16 x 16 lattice in its ordered phase (K = 0.6) with 10 betas: the weights collapse
/// onto a few chains, and the result says so, with a larger betas to try.
#[test]
fn a_hard_model_with_a_short_schedule_gets_the_warning() {
    let file = lattice_file(16, 0.6, 0.0);
    for method in ["ais", "sandwich"] {
        let spec = EstimateSpec {
            method: method.into(),
            chains: Some(64),
            betas: Some(10),
            burn_in: Some(10),
            ..Default::default()
        };
        let r = run(&file, &spec, 1).unwrap();
        let d = &r.forward.as_ref().unwrap().diagnostics;
        assert!(d.ess_fraction < 0.1 || d.max_weight > 0.5, "{d:?}");
        let warning = r
            .warnings
            .iter()
            .find(|w| w.contains("the error bar is not reliable"))
            .unwrap_or_else(|| panic!("{method}: no warning in {:?}", r.warnings));
        assert!(
            warning.contains("use more temperatures (e.g. betas = "),
            "{warning}"
        );
    }
    // An easy model with a long enough schedule gets none.
    let easy = rbm_file(&random_rbm(10, 4, 0.3, 2));
    let spec = EstimateSpec {
        method: "ais".into(),
        chains: Some(64),
        betas: Some(1000),
        ..Default::default()
    };
    assert_eq!(run(&easy, &spec, 1).unwrap().warnings, Vec::<String>::new());
}

/// `target_stderr = 0.05`: the reported standard error is at most the target and the
/// estimate within 4 targets of the exact value. Bound: the error is the run's noise (sd
/// <= target, so a 4-sd miss has probability 6e-5) plus AIS bias, which at the planned
/// log-weight variance (<= 1/2) is about (e^0.5 - 1) / (2 chains) < 0.01 nats.
#[test]
fn target_stderr_reaches_its_target_on_an_rbm_and_the_critical_lattice() {
    let models = [
        ("rbm 64x12", rbm_file(&random_rbm(64, 12, 0.5, 17)), "ais"),
        ("lattice 16x16 at K_c", lattice_file(16, K_C, 0.0), "ais"),
        (
            "rbm 64x12 sandwich",
            rbm_file(&random_rbm(64, 12, 0.5, 17)),
            "sandwich",
        ),
    ];
    for (name, file, method) in &models {
        let truth = exact(file);
        let spec = EstimateSpec {
            method: method.to_string(),
            target_stderr: Some(0.05),
            ..Default::default()
        };
        let started = std::time::Instant::now();
        let r = run(file, &spec, 9).unwrap();
        let plan = r.precision.clone().unwrap();
        eprintln!(
            "{name}: {plan:?} {} vs {truth} in {:?}",
            r.log_z,
            started.elapsed()
        );
        assert!(plan.target_reached, "{name}: {plan:?}");
        assert!(r.log_z_stderr <= 0.05, "{name}: {r:?}");
        assert!(
            (r.log_z - truth).abs() < 4.0 * 0.05,
            "{name}: {} vs {truth}",
            r.log_z
        );
        assert_eq!(plan.pilot_chains, super::precision::PILOT_CHAINS);
    }
}

#[test]
fn target_stderr_refuses_conflicts_and_impossible_targets() {
    let file = rbm_file(&random_rbm(10, 4, 1.0, 5));
    let message = |spec: EstimateSpec| match run(&file, &spec, 1) {
        Err(EngineError::InvalidInput(m)) => m,
        other => panic!("{other:?}"),
    };
    let with = |f: &dyn Fn(&mut EstimateSpec)| {
        let mut spec = EstimateSpec {
            method: "ais".into(),
            target_stderr: Some(0.05),
            ..Default::default()
        };
        f(&mut spec);
        spec
    };
    let m = message(with(&|s| {
        s.chains = Some(10);
        s.betas = Some(10)
    }));
    assert!(m.contains("drop estimate.chains and estimate.betas"), "{m}");
    let m = message(with(&|s| s.method = "exact".into()));
    assert!(m.contains("drop target_stderr"), "{m}");
    let m = message(with(&|s| s.target_stderr = Some(-1.0)));
    assert!(m.contains("above 0"), "{m}");
    let m = message(with(&|s| s.target_stderr = Some(1e-7)));
    assert!(
        m.contains("estimate.target_stderr = 0.0000001 needs about"),
        "{m}"
    );
    assert!(m.contains("limit of"), "{m}");
}
