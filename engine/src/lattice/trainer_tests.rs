//! Tests of lattice Ising training: J and h recovered from samples of a known model, exact
//! resume, refusals.

use super::checkerboard::{LatticeChains, LatticeUpdate};
use super::trainer::LatticeTrainer;
use super::LatticeIsing;
use crate::data::{Dataset, ValueKind};
use crate::rng::RngStream;
use crate::spec::{DataShape, ModelSpec, TrainSpec};
use crate::train::FamilyTrainer;

/// Configurations of `model`: `chains` chains after 300 burn-in sweeps, two snapshots 30
/// sweeps apart (well beyond the autocorrelation time at K = 0.3 on 8 x 8).
fn samples(model: &LatticeIsing, chains: usize) -> Dataset {
    let mut rng = RngStream::new(42, 9);
    let mut c = LatticeChains::random(model.size, chains, rng.next_key()).unwrap();
    let betas = vec![1.0; chains];
    c.sweep(model, &betas, LatticeUpdate::HeatBath, &mut rng, 300);
    let mut values: Vec<f32> = c.spins().iter().map(|&s| s as f32).collect();
    c.sweep(model, &betas, LatticeUpdate::HeatBath, &mut rng, 30);
    values.extend(c.spins().iter().map(|&s| s as f32));
    let n = model.sites();
    Dataset {
        rows: 2 * chains,
        cols: n,
        values,
        kind: ValueKind::Real,
        q: 0,
        notes: vec![],
    }
}

fn spec() -> ModelSpec {
    ModelSpec {
        model_type: "lattice_ising".into(),
        ..Default::default()
    }
}

/// Moment matching recovers J = 0.3, h = 0.05 from 1000 configurations of an 8 x 8 torus.
/// Statistical error of the maximum-likelihood estimate: 1 / sqrt(rows * Var(sum of bonds))
/// with Var ~ 2N (1 - <b>^2) ~ 100 gives 1 / sqrt(1000 * 100) = 0.003 for J, similar for h;
/// the persistent chains (200 x 64 spins) add gradient noise that the decaying learning rate
/// (0.05 -> 0.002, Adam) averages to a jitter below 0.01. We allow 0.03 (3x that sum);
/// a wrong gradient sign or factor does not converge to within 0.03.
#[test]
fn recovers_coupling_and_field() {
    let truth = LatticeIsing::new(8, 0.3, 0.05).unwrap();
    let data = samples(&truth, 500);
    let train = TrainSpec {
        chains: Some(200),
        k: Some(5),
        epochs: Some(400),
        optimizer: "adam".into(),
        learning_rate: Some(0.05),
        lr_schedule: "exponential".into(),
        lr_final: Some(0.002),
        ..Default::default()
    };
    let mut t = LatticeTrainer::new(&spec(), &train, 1, data).unwrap();
    let mut last = None;
    while t.epochs_done() < t.epochs_total() {
        last = t.run_epoch(&|| false, &mut |_| {}).unwrap();
    }
    let m = t.model();
    eprintln!(
        "learned J = {}, h = {}; {:?}",
        m.coupling,
        m.field,
        last.unwrap().metrics
    );
    assert!(
        (m.coupling - 0.3).abs() < 0.03 && (m.field - 0.05).abs() < 0.03,
        "J = {}, h = {}",
        m.coupling,
        m.field
    );
}

#[test]
fn resume_continues_exactly() {
    let data = samples(&LatticeIsing::new(4, 0.4, 0.0).unwrap(), 20);
    for train in [
        TrainSpec {
            chains: Some(10),
            k: Some(2),
            epochs: Some(6),
            ..Default::default()
        },
        TrainSpec {
            method: "pt".into(),
            betas: vec![0.3, 0.6, 1.0],
            chains: Some(8),
            k: Some(3),
            epochs: Some(6),
            sampler: "metropolis".into(),
            ..Default::default()
        },
    ] {
        let run = |t: &mut LatticeTrainer, n: usize| {
            for _ in 0..n {
                t.run_epoch(&|| false, &mut |_| {}).unwrap();
            }
        };
        let mut straight = LatticeTrainer::new(&spec(), &train, 3, data.clone()).unwrap();
        run(&mut straight, 6);
        let mut first = LatticeTrainer::new(&spec(), &train, 3, data.clone()).unwrap();
        run(&mut first, 3);
        let bytes = first.checkpoint().unwrap();
        let mut second = LatticeTrainer::resume(&spec(), &train, 3, data.clone(), &bytes).unwrap();
        run(&mut second, 3);
        assert_eq!(straight.model(), second.model());
        assert_eq!(straight.chain_spins(), second.chain_spins());
        let info = crate::model_file::inspect_model(&second.model_file().unwrap()).unwrap();
        assert_eq!(info.dims["size"], 4);
    }
}

#[test]
fn bad_requests_are_refused() {
    let shape = |cols| DataShape {
        rows: 10,
        cols,
        kind: ValueKind::Binary,
        q: 0,
    };
    let train = TrainSpec::default();
    assert!(super::trainer::validate(&spec(), &train, &shape(16)).is_ok());
    assert!(super::trainer::validate(&spec(), &train, &shape(15)).is_err());
    assert!(
        super::trainer::validate(&spec(), &train, &shape(9)).is_err(),
        "odd L"
    );
    assert!(super::trainer::validate(
        &ModelSpec {
            size: Some(8),
            ..spec()
        },
        &train,
        &shape(16)
    )
    .is_err());
    assert!(super::trainer::validate(
        &ModelSpec {
            q: Some(3),
            ..spec()
        },
        &train,
        &shape(16)
    )
    .is_err());
    let pt = TrainSpec {
        method: "pt".into(),
        ..Default::default()
    };
    assert!(
        super::trainer::validate(&spec(), &pt, &shape(16)).is_err(),
        "pt without a ladder"
    );
    let cat = DataShape {
        rows: 10,
        cols: 16,
        kind: ValueKind::Categorical,
        q: 21,
    };
    assert!(super::trainer::validate(&spec(), &train, &cat).is_err());
    let data = Dataset {
        rows: 1,
        cols: 4,
        values: vec![1.0, -1.0, 0.5, 1.0],
        kind: ValueKind::Real,
        q: 0,
        notes: vec![],
    };
    assert!(
        LatticeTrainer::new(&spec(), &train, 1, data).is_err(),
        "non-spin values"
    );
}
