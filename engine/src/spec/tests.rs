//! Tests of the job-spec types: defaults, resolution, refusals.

use super::*;
use crate::data::Dataset;
use crate::train::{validate_train, validate_train_data, values_need_checking};

fn shape(rows: usize, cols: usize) -> DataShape {
    DataShape {
        rows,
        cols,
        kind: ValueKind::Binary,
        q: 0,
    }
}

fn rbm(hidden: u32) -> ModelSpec {
    ModelSpec {
        model_type: "bernoulli_rbm".into(),
        hidden: Some(hidden),
        ..Default::default()
    }
}

fn refused(model: &ModelSpec, train: &TrainSpec, data: DataShape, needle: &str) {
    match validate_train(model, train, &data) {
        Err(EngineError::InvalidInput(msg)) => {
            assert!(
                msg.contains(needle),
                "message {msg:?} should mention {needle:?}"
            )
        }
        other => panic!("expected InvalidInput mentioning {needle:?}, got {other:?}"),
    }
}

fn model(model_type: &str) -> ModelSpec {
    ModelSpec {
        model_type: model_type.into(),
        ..Default::default()
    }
}

/// Options of one family or method are refused for the others, naming the field.
#[test]
fn options_of_other_families_are_refused() {
    let d = shape(100, 16);
    let t = TrainSpec::default();
    for family in ["potts", "lattice_ising"] {
        let m = model(family);
        validate_train(&m, &t, &d).unwrap();
        let train = |change: fn(&mut TrainSpec)| {
            let mut t = t.clone();
            change(&mut t);
            t
        };
        refused(
            &m,
            &train(|t| t.batch_size = Some(10)),
            d,
            "train.batch_size",
        );
        refused(
            &m,
            &train(|t| t.centering = Some(true)),
            d,
            "train.centering",
        );
        refused(
            &m,
            &train(|t| t.centering = Some(false)),
            d,
            "train.centering",
        );
        refused(
            &m,
            &train(|t| t.sampler = "wolff".into()),
            d,
            "train.sampler",
        );
        refused(
            &m,
            &train(|t| t.visible_bias_init = "zero".into()),
            d,
            "train.visible_bias_init",
        );
        refused(&m, &train(|t| t.shuffle = Some(false)), d, "train.shuffle");
        refused(&m, &train(|t| t.method = "pt".into()), d, "train.betas");
        let with = |change: fn(&mut ModelSpec)| {
            let mut m = m.clone();
            change(&mut m);
            m
        };
        refused(
            &with(|m| m.learn_sigma = Some(true)),
            &t,
            d,
            "model.learn_sigma",
        );
        refused(
            &with(|m| m.standardize = Some(true)),
            &t,
            d,
            "model.standardize",
        );
        refused(&with(|m| m.hidden = Some(3)), &t, d, "model.hidden");
    }
    let lattice = model("lattice_ising");
    for (change, needle) in [
        (
            ModelSpec {
                pseudocount: Some(0.1),
                ..lattice.clone()
            },
            "model.pseudocount",
        ),
        (
            ModelSpec {
                size: Some(6),
                ..lattice.clone()
            },
            "model.size",
        ),
    ] {
        refused(&change, &t, d, needle);
    }
    for q in [0, 1, 256] {
        let potts = ModelSpec {
            q: Some(q),
            ..model("potts")
        };
        refused(&potts, &t, d, "model.q");
    }
}

/// What only the values can tell: checked by `validate_train_data`, and asked for by
/// `values_need_checking` exactly for real-valued data.
#[test]
fn value_checks_need_the_values() {
    let t = TrainSpec::default();
    let data = |values: Vec<f32>| Dataset::from_values(4, 4, values).unwrap();
    let halves = data(vec![0.5; 16]);
    let states = data((0..16).map(|i| (i % 3) as f32).collect());
    let spins = data(
        (0..16)
            .map(|i| if i % 3 == 0 { -1.0 } else { 1.0 })
            .collect(),
    );
    for (m, needle) in [
        (rbm(2), "[0, 1]"),
        (model("lattice_ising"), "spins"),
        (model("potts"), "integer states"),
    ] {
        assert!(values_need_checking(&m, ValueKind::Real));
        assert!(!values_need_checking(&m, ValueKind::Binary));
        let bad = if needle == "[0, 1]" { &states } else { &halves };
        validate_train(&m, &t, &shape(4, 4)).unwrap();
        match validate_train_data(&m, &t, bad) {
            Err(EngineError::InvalidInput(msg)) => assert!(msg.contains(needle), "{msg}"),
            other => panic!("{m:?}: expected a refusal naming {needle}, got {other:?}"),
        }
    }
    assert!(!values_need_checking(
        &model("gaussian_rbm"),
        ValueKind::Real
    ));
    // integer states without model.q: q from the largest state
    validate_train_data(&model("potts"), &t, &states).unwrap();
    validate_train_data(&model("lattice_ising"), &t, &spins).unwrap();
    validate_train_data(&rbm(2), &t, &halves).unwrap();
}

#[test]
fn good_spec_resolves_defaults() {
    let t = TrainSpec::default();
    validate_train(&rbm(16), &t, &shape(50, 8)).unwrap();
    let s = t.resolve(50).unwrap();
    assert_eq!(
        (s.method, s.k, s.batch_size, s.chains, s.epochs),
        (Method::Pcd, 1, 50, 50, 10)
    );
    assert_eq!(s.learning_rate, 0.05);
    let s = TrainSpec {
        lr_schedule: "exponential".into(),
        lr_final: Some(0.001),
        epochs: Some(3),
        ..t
    };
    let s = s.resolve(50).unwrap();
    assert!((s.learning_rate_at(0) - 0.05).abs() < 1e-12);
    assert!((s.learning_rate_at(2) - 0.001).abs() < 1e-12);
    assert!((s.learning_rate_at(1) - (0.05f64 * 0.001).sqrt()).abs() < 1e-12);
}

#[test]
fn every_bad_spec_is_invalid_input_with_a_message() {
    let d = shape(100, 8);
    let t = TrainSpec::default();
    let m = rbm(4);
    refused(
        &ModelSpec {
            model_type: "boltzmann".into(),
            ..m.clone()
        },
        &t,
        d,
        "unknown model type",
    );
    refused(
        &ModelSpec {
            model_type: "".into(),
            ..m.clone()
        },
        &t,
        d,
        "model.type",
    );
    refused(&rbm(0), &t, d, "hidden");
    refused(
        &ModelSpec {
            hidden: None,
            ..m.clone()
        },
        &t,
        d,
        "hidden",
    );
    refused(&rbm(MAX_HIDDEN + 1), &t, d, "hidden");
    refused(
        &ModelSpec {
            visible: Some(9),
            ..m.clone()
        },
        &t,
        d,
        "columns",
    );
    refused(
        &ModelSpec {
            q: Some(3),
            ..m.clone()
        },
        &t,
        d,
        "do not apply",
    );
    refused(
        &ModelSpec {
            learn_sigma: Some(true),
            ..m.clone()
        },
        &t,
        d,
        "gaussian_rbm",
    );
    let bad = |t: TrainSpec, needle: &str| refused(&m, &t, d, needle);
    bad(
        TrainSpec {
            learning_rate: Some(f64::NAN),
            ..t.clone()
        },
        "learning_rate",
    );
    bad(
        TrainSpec {
            learning_rate: Some(-0.1),
            ..t.clone()
        },
        "learning_rate",
    );
    bad(
        TrainSpec {
            learning_rate: Some(0.0),
            ..t.clone()
        },
        "learning_rate",
    );
    bad(
        TrainSpec {
            learning_rate: Some(f64::INFINITY),
            ..t.clone()
        },
        "learning_rate",
    );
    bad(
        TrainSpec {
            batch_size: Some(0),
            ..t.clone()
        },
        "batch_size",
    );
    bad(
        TrainSpec {
            batch_size: Some(101),
            ..t.clone()
        },
        "batch_size",
    );
    bad(
        TrainSpec {
            epochs: Some(0),
            ..t.clone()
        },
        "epochs",
    );
    bad(
        TrainSpec {
            k: Some(0),
            ..t.clone()
        },
        "k",
    );
    bad(
        TrainSpec {
            chains: Some(0),
            ..t.clone()
        },
        "chains",
    );
    bad(
        TrainSpec {
            chains: Some(MAX_CHAINS + 1),
            ..t.clone()
        },
        "chains",
    );
    bad(
        TrainSpec {
            method: "gibbs".into(),
            ..t.clone()
        },
        "method",
    );
    bad(
        TrainSpec {
            optimizer: "rmsprop".into(),
            ..t.clone()
        },
        "optimizer",
    );
    bad(
        TrainSpec {
            momentum: Some(1.0),
            ..t.clone()
        },
        "momentum",
    );
    bad(
        TrainSpec {
            l2: Some(-1.0),
            ..t.clone()
        },
        "l2",
    );
    bad(
        TrainSpec {
            l1: Some(f64::NAN),
            ..t.clone()
        },
        "l1",
    );
    bad(
        TrainSpec {
            lr_schedule: "cosine".into(),
            ..t.clone()
        },
        "lr_schedule",
    );
    bad(
        TrainSpec {
            lr_final: Some(0.01),
            ..t.clone()
        },
        "lr_final",
    );
    bad(
        TrainSpec {
            method: "pt".into(),
            ..t.clone()
        },
        "ladder",
    );
    bad(
        TrainSpec {
            method: "pt".into(),
            betas: vec![0.5, 0.9],
            ..t.clone()
        },
        "end at 1",
    );
    bad(
        TrainSpec {
            method: "pt".into(),
            betas: vec![0.5, 0.4, 1.0],
            ..t.clone()
        },
        "increasing",
    );
    bad(
        TrainSpec {
            method: "pt".into(),
            betas: vec![-0.5, 1.0],
            ..t.clone()
        },
        "(0, 1]",
    );
    bad(
        TrainSpec {
            betas: vec![0.5, 1.0],
            ..t.clone()
        },
        "only to method",
    );
    bad(
        TrainSpec {
            validation_fraction: Some(0.95),
            ..t.clone()
        },
        "validation_fraction",
    );
    bad(
        TrainSpec {
            validation_fraction: Some(0.001),
            ..t.clone()
        },
        "holds out no rows",
    );
    bad(
        TrainSpec {
            adam_beta1: Some(0.9),
            ..t.clone()
        },
        "adam",
    );
    bad(
        TrainSpec {
            optimizer: "adam".into(),
            momentum: Some(0.9),
            ..t.clone()
        },
        "momentum",
    );
    bad(
        TrainSpec {
            sampler: "metropolis".into(),
            ..t.clone()
        },
        "sampler",
    );
    bad(
        TrainSpec {
            ais_every: Some(0),
            ..t.clone()
        },
        "ais_every",
    );
    bad(
        TrainSpec {
            ais_chains: Some(50),
            ..t.clone()
        },
        "need train.ais_every",
    );
    bad(
        TrainSpec {
            ais_every: Some(1),
            ais_chains: Some(MAX_AIS_CHAINS + 1),
            ..t.clone()
        },
        "ais_chains",
    );
    bad(
        TrainSpec {
            ais_every: Some(1),
            ais_betas: Some(MAX_AIS_BETAS + 1),
            ..t.clone()
        },
        "ais_betas",
    );
    bad(
        TrainSpec {
            ais_every: Some(1),
            ais_chains: Some(MAX_AIS_CHAINS),
            ais_betas: Some(MAX_AIS_BETAS),
            ..t.clone()
        },
        "transitions per evaluation",
    );
    // AIS during training is for RBMs only
    refused(
        &ModelSpec {
            model_type: "lattice_ising".into(),
            size: Some(4),
            ..Default::default()
        },
        &TrainSpec {
            ais_every: Some(1),
            ..t.clone()
        },
        shape(100, 16),
        "applies to bernoulli_rbm and gaussian_rbm",
    );
    validate_train(
        &m,
        &TrainSpec {
            ais_every: Some(2),
            ais_chains: Some(10),
            ais_betas: Some(100),
            ..t.clone()
        },
        &d,
    )
    .unwrap();
    bad(
        TrainSpec {
            checkpoint_every: Some(0),
            ..t.clone()
        },
        "checkpoint_every",
    );
    refused(
        &m,
        &t,
        DataShape {
            kind: ValueKind::Categorical,
            q: 21,
            ..d
        },
        "potts",
    );
    refused(
        &ModelSpec {
            model_type: "gaussian_rbm".into(),
            ..m.clone()
        },
        &TrainSpec {
            centering: Some(true),
            ..t.clone()
        },
        d,
        "centering",
    );
    bad(
        TrainSpec {
            method: "pt".into(),
            betas: vec![0.5, 1.0],
            k: Some(2),
            pt_swap_every: Some(3),
            ..t.clone()
        },
        "train.pt_swap_every",
    );
    bad(
        TrainSpec {
            method: "cd".into(),
            chains: Some(10),
            ..t.clone()
        },
        "train.chains",
    );
    // a chain population too large to hold
    refused(
        &rbm(1000),
        &TrainSpec {
            chains: Some(MAX_CHAINS),
            ..t.clone()
        },
        shape(100, 1000),
        "chains",
    );
}
