//! The three facades end to end on model files: results against exact answers, and
//! bad requests refused with a clear message.

use super::job::{check_estimate_request, estimate_log_z, EstimateMethod, EstimateSpec};
use crate::backend::BackendKind;
use crate::data::Dataset;
use crate::error::EngineError;
use crate::estimate::chains::rbm::RbmParams;
use crate::estimate::kaufman::lattice_ising_log_z;
use crate::observe::{check_observe_request, run_observe, ObserveSpec};
use crate::sample::{run_sample, SampleSpec};
use crate::tensors::TensorWriter;
use std::collections::BTreeMap;

pub(crate) fn rbm_file(p: &RbmParams) -> Vec<u8> {
    let mut w = TensorWriter::new();
    w.add("W", &[p.visible, p.hidden], &p.weights).unwrap();
    w.add("b", &[p.visible], &p.visible_bias).unwrap();
    w.add("c", &[p.hidden], &p.hidden_bias).unwrap();
    w.meta("type", "bernoulli_rbm");
    w.to_bytes().unwrap()
}

pub(crate) fn lattice_file(size: usize, coupling: f32, field: f32) -> Vec<u8> {
    let mut w = TensorWriter::new();
    w.add("J", &[], &[coupling]).unwrap();
    w.add("h", &[], &[field]).unwrap();
    w.meta("type", "lattice_ising");
    w.meta("size", size.to_string());
    w.to_bytes().unwrap()
}

fn run_estimate(
    file: &[u8],
    spec: &EstimateSpec,
    data: Option<&Dataset>,
) -> Result<super::EstimateResult, EngineError> {
    estimate_log_z(
        file,
        spec,
        data,
        3,
        BackendKind::Cpu,
        &|| false,
        &mut |_| {},
    )
}

fn invalid(r: Result<impl std::fmt::Debug, EngineError>) -> String {
    match r {
        Err(EngineError::InvalidInput(m)) => m,
        other => panic!("expected InvalidInput, got {other:?}"),
    }
}

fn spec(method: &str) -> EstimateSpec {
    EstimateSpec {
        method: method.into(),
        ..Default::default()
    }
}

#[test]
fn exact_through_the_facade_uses_enumeration_or_kaufman() {
    // 16 x 16 at zero field: Kaufman, instantly.
    let r = run_estimate(&lattice_file(16, 0.3, 0.0), &spec("exact"), None).unwrap();
    assert_eq!(r.method, EstimateMethod::Exact);
    assert!((r.log_z - lattice_ising_log_z(16, 16, 0.3f32 as f64)).abs() < 1e-9);
    // 4 x 4 with a field: enumeration; with h -> -h the same by symmetry.
    let a = run_estimate(&lattice_file(4, 0.4, 0.2), &spec("exact"), None).unwrap();
    let b = run_estimate(&lattice_file(4, 0.4, -0.2), &spec("exact"), None).unwrap();
    assert!((a.log_z - b.log_z).abs() < 1e-9 && a.log_z > lattice_ising_log_z(4, 4, 0.4));
}

/// A 20 x 8 RBM: AIS with 100 chains x 2000 steps against enumeration, within 0.05 nats
/// and 3 standard errors (measured se ~0.005); reverse AIS from the data given, which
/// here are model samples drawn by the sample facade, so the reverse estimate is also
/// within 0.1 nats (a bound only in expectation and with exact samples).
#[test]
fn ais_and_reverse_ais_through_the_facade() {
    let p = crate::estimate::tests::random_rbm(20, 8, 0.5, 4);
    let file = rbm_file(&p);
    let exact = run_estimate(&file, &spec("exact"), None).unwrap().log_z;
    let ais = run_estimate(
        &file,
        &EstimateSpec {
            method: "ais".into(),
            chains: Some(100),
            betas: Some(2000),
            ..Default::default()
        },
        None,
    )
    .unwrap();
    assert!(
        (ais.log_z - exact).abs() < 0.05
            && (ais.log_z - exact).abs() < 3.0 * ais.log_z_stderr + 1e-3,
        "{ais:?} {exact}"
    );
    assert!(ais.log_z_low <= ais.log_z && ais.log_z <= ais.log_z_high);
    assert!(ais.ess.unwrap() > 1.0 && ais.reverse.is_none());
    let (samples, _) = run_sample(
        &file,
        &SampleSpec {
            samples: Some(200),
            burn_in: Some(200),
            thin: Some(5),
            chains: Some(20),
        },
        1,
        BackendKind::Cpu,
        &|| false,
        &mut |_| {},
    )
    .unwrap();
    let data = Dataset::from_values(samples.rows, samples.cols, samples.values).unwrap();
    let both = run_estimate(
        &file,
        &EstimateSpec {
            method: "reverse_ais".into(),
            chains: Some(100),
            betas: Some(2000),
            ..Default::default()
        },
        Some(&data),
    )
    .unwrap();
    let rev = both.reverse.as_ref().unwrap();
    assert!(
        rev.reverse && (rev.log_z - exact).abs() < 0.1,
        "{rev:?} {exact}"
    );
    assert!(
        rev.log_z > exact - 3.0 * rev.log_z_stderr - 1e-3,
        "{rev:?} {exact}"
    );
}

#[test]
fn bad_estimate_requests_are_refused() {
    let lattice = lattice_file(8, 0.4, 0.0);
    assert!(invalid(run_estimate(
        &lattice,
        &EstimateSpec {
            chains: Some(0),
            ..spec("ais")
        },
        None
    ))
    .contains("chains"));
    let m = invalid(run_estimate(
        &lattice,
        &EstimateSpec {
            schedule: vec![0.0, 0.7, 0.3, 1.0],
            ..spec("ais")
        },
        None,
    ));
    assert!(m.contains("not increasing"), "{m}");
    let m = invalid(run_estimate(
        &lattice,
        &EstimateSpec {
            schedule: vec![0.0, 0.5],
            ..spec("ais")
        },
        None,
    ));
    assert!(m.contains("ends at 0.5"), "{m}");
    assert!(invalid(run_estimate(&lattice, &spec("magic"), None))
        .contains("exact, ais, reverse_ais or sandwich"));
    // Exact on a model too large to enumerate: 30 x 30 RBM, and a 6 x 6 lattice in a field.
    let big = crate::estimate::tests::random_rbm(30, 30, 0.1, 1);
    assert!(invalid(run_estimate(&rbm_file(&big), &spec("exact"), None))
        .contains("use method = \"ais\""));
    assert!(invalid(run_estimate(
        &lattice_file(6, 0.4, 0.1),
        &spec("exact"),
        None
    ))
    .contains("too large"));
    // Not a model file at all, and a model type the estimators do not handle.
    assert!(invalid(run_estimate(b"not a model", &spec("ais"), None)).len() > 5);
    let mut w = TensorWriter::new();
    w.add("J", &[], &[0.1]).unwrap();
    w.meta("type", "lattice_ising");
    assert!(invalid(run_estimate(&w.to_bytes().unwrap(), &spec("ais"), None)).contains("\"h\""));
    // Pre-queue checks from a model listing.
    let dims: BTreeMap<String, u64> =
        [("visible".to_string(), 784), ("hidden".to_string(), 500)].into();
    assert!(invalid(check_estimate_request(
        &spec("exact"),
        "bernoulli_rbm",
        &dims
    ))
    .contains("smaller layer"));
    assert!(check_estimate_request(&spec("ais"), "bernoulli_rbm", &dims).is_ok());
    assert!(invalid(check_estimate_request(&spec("ais"), "hopfield", &dims)).contains("hopfield"));
    let obs = ObserveSpec {
        statistic: "hamming_to".into(),
        reference: vec![0.0; 3],
        ..Default::default()
    };
    assert!(invalid(check_observe_request(&obs, "bernoulli_rbm", &dims)).contains("784"));
    let obs = ObserveSpec {
        statistic: "fraction_on".into(),
        chains: Some(0),
        ..Default::default()
    };
    assert!(invalid(check_observe_request(&obs, "bernoulli_rbm", &dims)).contains("chains"));
    // Reverse AIS from data of the wrong width.
    let data = Dataset::from_values(2, 3, vec![0.0; 6]).unwrap();
    assert!(invalid(run_estimate(
        &rbm_file(&big),
        &EstimateSpec {
            betas: Some(10),
            ..spec("reverse_ais")
        },
        Some(&data)
    ))
    .contains("columns"));
}

#[test]
fn stop_requests_interrupt_every_facade() {
    let file = lattice_file(8, 0.4, 0.0);
    let stop = || true;
    let r = estimate_log_z(
        &file,
        &spec("ais"),
        None,
        1,
        BackendKind::Cpu,
        &stop,
        &mut |_| {},
    );
    assert_eq!(r.unwrap_err(), EngineError::Interrupted);
    let r = run_sample(
        &file,
        &SampleSpec::default(),
        1,
        BackendKind::Cpu,
        &stop,
        &mut |_| {},
    );
    assert_eq!(r.unwrap_err(), EngineError::Interrupted);
    let obs = ObserveSpec {
        statistic: "energy".into(),
        ..Default::default()
    };
    let r = run_observe(&file, &obs, 1, BackendKind::Cpu, &stop, &mut |_| {});
    assert_eq!(r.unwrap_err(), EngineError::Interrupted);
}

/// The 51% example through the facade with the spec defaults (10^4 samples, 16 chains,
/// 65 bins); tolerances as in `observe::tests::the_51_percent_example`.
#[test]
fn observe_facade_reports_the_51_percent_example() {
    let b = (0.49f64 / 0.51).ln() as f32;
    let p = RbmParams {
        visible: 64,
        hidden: 1,
        weights: vec![0.0; 64],
        visible_bias: vec![b; 64],
        hidden_bias: vec![0.0],
    };
    let obs = ObserveSpec {
        statistic: "fraction_on".into(),
        burn_in: Some(10),
        ..Default::default()
    };
    let mut last = 0.0;
    let (r, notes) = run_observe(
        &rbm_file(&p),
        &obs,
        7,
        BackendKind::Wgpu,
        &|| false,
        &mut |f| last = f,
    )
    .unwrap();
    assert_eq!(last, 1.0);
    // Without the wgpu feature the request falls back to the cpu with a note; with it,
    // the RBM chains run on the device and there is nothing to note.
    if cfg!(feature = "wgpu") {
        assert!(notes.is_empty(), "{notes:?}");
    } else {
        assert!(
            notes
                .iter()
                .any(|n| n.contains("not compiled into this build") && n.contains("cpu")),
            "{notes:?}"
        );
    }
    let width = 1.0 / 64.0;
    assert!(
        r.summary.mode > 0.48 - width && r.summary.mode < 0.49 + width,
        "{}",
        r.summary.mode
    );
    assert!((r.summary.mean - 0.49).abs() < 0.01);
    assert_eq!(r.map_statistic, 0.0);
    assert_eq!(r.summary.histogram.counts.len(), 65);
}

/// A Gaussian RBM (8 visible, 6 hidden, sigma 0.5-1.5) through the facade: AIS against
/// the exact sum over the hidden layer with the visibles integrated out (100 chains x
/// 2000 steps; within 0.05 nats and 3 standard errors), and samples with the data
/// transform undone (zero weights: each unit is N(b_i, sigma_i^2) in model space, so in
/// data space its mean is mean_i + std_i b_i).
#[test]
fn gaussian_rbm_through_the_facade() {
    let p = crate::estimate::tests::random_rbm(8, 6, 0.4, 9);
    let sigma: Vec<f32> = (0..8).map(|i| 0.5 + i as f32 / 7.0).collect();
    let file = |p: &RbmParams, transform: bool| {
        let mut w = TensorWriter::new();
        w.add("W", &[p.visible, p.hidden], &p.weights).unwrap();
        w.add("b", &[p.visible], &p.visible_bias).unwrap();
        w.add("c", &[p.hidden], &p.hidden_bias).unwrap();
        w.add("sigma", &[p.visible], &sigma).unwrap();
        if transform {
            w.add("transform_mean", &[p.visible], &[10.0; 8]).unwrap();
            w.add("transform_std", &[p.visible], &[2.0; 8]).unwrap();
        }
        w.meta("type", "gaussian_rbm");
        w.to_bytes().unwrap()
    };
    let exact = run_estimate(&file(&p, false), &spec("exact"), None)
        .unwrap()
        .log_z;
    let ais = run_estimate(
        &file(&p, false),
        &EstimateSpec {
            chains: Some(100),
            betas: Some(2000),
            ..spec("ais")
        },
        None,
    )
    .unwrap();
    assert!(
        (ais.log_z - exact).abs() < 0.05
            && (ais.log_z - exact).abs() < 3.0 * ais.log_z_stderr + 1e-3,
        "{ais:?} {exact}"
    );
    let zero = RbmParams {
        weights: vec![0.0; 48],
        ..p.clone()
    };
    let (m, _) = run_sample(
        &file(&zero, true),
        &SampleSpec {
            samples: Some(4000),
            burn_in: Some(5),
            thin: Some(1),
            chains: Some(40),
        },
        2,
        BackendKind::Cpu,
        &|| false,
        &mut |_| {},
    )
    .unwrap();
    for i in 0..8 {
        let mean = (0..m.rows).map(|r| m.values[r * 8 + i] as f64).sum::<f64>() / m.rows as f64;
        let expected = 10.0 + 2.0 * p.visible_bias[i] as f64;
        // sd of one draw in data space: 2 sigma_i <= 3; se of the mean <= 3 / sqrt(4000) = 0.047.
        assert!(
            (mean - expected).abs() < 0.2,
            "unit {i}: {mean} vs {expected}"
        );
    }
    let obs = ObserveSpec {
        statistic: "fraction_on".into(),
        ..Default::default()
    };
    assert!(invalid(run_observe(
        &file(&p, false),
        &obs,
        1,
        BackendKind::Cpu,
        &|| false,
        &mut |_| {}
    ))
    .contains("real-valued"));
}
