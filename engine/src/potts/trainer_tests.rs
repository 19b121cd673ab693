//! Tests of Boltzmann-machine DCA training: the inverse problem on a model with known
//! couplings, exact resume, and refusals of bad requests.

use super::trainer::PottsTrainer;
use super::PottsModel;
use crate::data::{Dataset, ValueKind};
use crate::error::EngineError;
use crate::family::FamilyTrainer;
use crate::potts::stats::pearson;
use crate::potts::tests::random_model;
use crate::rng::RngKey;
use crate::spec::{ModelSpec, TrainSpec};

/// `rows` independent exact samples of `model` (inverse CDF over the enumerated states).
fn exact_samples(model: &PottsModel, rows: usize, seed: u64) -> Dataset {
    let (l, q) = (model.sites, model.q);
    let count = model.configurations() as usize;
    let decode = |mut k: usize| -> Vec<u8> {
        (0..l)
            .map(|_| {
                let s = (k % q) as u8;
                k /= q;
                s
            })
            .collect()
    };
    let neg: Vec<f64> = (0..count).map(|k| -model.energy(&decode(k))).collect();
    let max = neg.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let mut cdf = Vec::with_capacity(count);
    let mut total = 0.0;
    for v in &neg {
        total += (v - max).exp();
        cdf.push(total);
    }
    let key = RngKey::new(seed, 77, 0);
    let mut values = Vec::with_capacity(rows * l);
    for r in 0..rows {
        let w = key.words(r as u32);
        let u = ((w[0] as u64) << 32 | w[1] as u64) as f64 / 2f64.powi(64) * total;
        let k = cdf.partition_point(|&c| c <= u).min(count - 1);
        values.extend(decode(k).iter().map(|&s| s as f32));
    }
    Dataset {
        rows,
        cols: l,
        values,
        kind: ValueKind::Categorical,
        q: q as u32,
        notes: vec![],
    }
}

fn potts_spec() -> ModelSpec {
    ModelSpec {
        model_type: "potts".into(),
        reweight_identity: Some(0.0),
        ..Default::default()
    }
}

/// Inverse problem: 20000 exact samples of an L = 6, q = 3 model with couplings of scale
/// 0.6; Adam moment matching with 1000 persistent chains. The learned couplings, in the
/// zero-sum gauge (the gauge in which J is determined by the distribution), must correlate
/// with the true ones at Pearson >= 0.95. Why this is attainable: the statistical error of
/// the data two-point frequencies is ~ sqrt(p(1-p)/20000) <= 0.0035 against connected
/// correlations of order 0.05-0.1, and the chain noise (1000 chains) is of the same order,
/// so the fitted couplings carry an error of a few percent of their spread (the test
/// reaches ~0.99).
#[test]
fn learned_couplings_match_the_true_ones() {
    let truth = random_model(6, 3, 0.6, 21);
    let data = exact_samples(&truth, 20_000, 5);
    let train = TrainSpec {
        chains: Some(1000),
        k: Some(5),
        epochs: Some(300),
        optimizer: "adam".into(),
        learning_rate: Some(0.05),
        ..Default::default()
    };
    let mut model_spec = potts_spec();
    model_spec.pseudocount = Some(0.0);
    let mut t = PottsTrainer::new(&model_spec, &train, 3, data).unwrap();
    let mut last = None;
    while t.epochs_done() < t.epochs_total() {
        last = t.run_epoch(&|| false, &mut |_| {}).unwrap();
    }
    let metrics = last.unwrap().metrics;
    let r = pearson(&truth.zero_sum_couplings(), &t.model().zero_sum_couplings());
    eprintln!("coupling Pearson {r:.4}, metrics {metrics:?}");
    assert!(r >= 0.95, "Pearson of couplings {r}; metrics {metrics:?}");
    assert!(metrics["pearson"] > 0.9, "{metrics:?}");
    // The exact log-likelihood of the fit is close to that of the truth on the same data.
    assert!(metrics.contains_key("log_likelihood"));
}

fn run(t: &mut PottsTrainer, epochs: usize) {
    for _ in 0..epochs {
        t.run_epoch(&|| false, &mut |_| {}).unwrap();
    }
}

/// 10 epochs straight and 5 + checkpoint + resume + 5 give bit-identical parameters, for
/// pcd with sgd momentum and for pt with adam.
#[test]
fn resume_continues_exactly() {
    let truth = random_model(5, 3, 0.5, 2);
    let data = exact_samples(&truth, 500, 1);
    for train in [
        TrainSpec {
            chains: Some(50),
            k: Some(2),
            epochs: Some(10),
            momentum: Some(0.5),
            l2: Some(0.01),
            ..Default::default()
        },
        TrainSpec {
            method: "pt".into(),
            betas: vec![0.5, 1.0],
            chains: Some(30),
            k: Some(3),
            epochs: Some(10),
            optimizer: "adam".into(),
            sampler: "metropolis".into(),
            ..Default::default()
        },
    ] {
        let spec = potts_spec();
        let mut straight = PottsTrainer::new(&spec, &train, 9, data.clone()).unwrap();
        run(&mut straight, 10);
        let mut first = PottsTrainer::new(&spec, &train, 9, data.clone()).unwrap();
        run(&mut first, 5);
        let bytes = first.checkpoint().unwrap();
        let mut second = super::checkpoint::resume(&spec, &train, 9, data.clone(), &bytes).unwrap();
        assert_eq!(second.epochs_done(), 5);
        run(&mut second, 5);
        assert_eq!(straight.model(), second.model(), "{train:?}");
        assert_eq!(straight.model_chains(), second.model_chains());
        // Another seed's checkpoint is refused.
        assert!(super::checkpoint::resume(&spec, &train, 10, data.clone(), &bytes).is_err());
    }
}

#[test]
fn bad_requests_are_refused() {
    let data = exact_samples(&random_model(4, 3, 0.5, 2), 50, 1);
    let train = TrainSpec {
        epochs: Some(2),
        ..Default::default()
    };
    let refuse = |model: ModelSpec, train: TrainSpec| {
        let r = PottsTrainer::new(&model, &train, 1, data.clone());
        assert!(
            matches!(r, Err(EngineError::InvalidInput(_))),
            "{model:?} {train:?} accepted"
        );
    };
    refuse(
        ModelSpec {
            q: Some(1),
            ..potts_spec()
        },
        train.clone(),
    );
    refuse(
        ModelSpec {
            q: Some(2),
            ..potts_spec()
        },
        train.clone(),
    );
    refuse(
        ModelSpec {
            hidden: Some(3),
            ..potts_spec()
        },
        train.clone(),
    );
    refuse(
        ModelSpec {
            pseudocount: Some(1.5),
            ..potts_spec()
        },
        train.clone(),
    );
    refuse(
        ModelSpec {
            reweight_identity: Some(2.0),
            ..potts_spec()
        },
        train.clone(),
    );
    refuse(
        ModelSpec {
            unknown_residues: Some("keep".into()),
            ..potts_spec()
        },
        train.clone(),
    );
    refuse(
        potts_spec(),
        TrainSpec {
            method: "pt".into(),
            ..train.clone()
        },
    );
    refuse(
        potts_spec(),
        TrainSpec {
            sampler: "wolff".into(),
            ..train.clone()
        },
    );
}

/// The bundled PF00014 alignment trains end to end: a few updates raise the Pearson
/// correlation of connected correlations from the independent-site start.
#[test]
fn pf00014_trains() {
    let bytes = include_bytes!("../../../data/msa/PF00014.fasta");
    let data =
        crate::data::parse_dataset(crate::data::DataFormat::Fasta, bytes, &Default::default())
            .unwrap();
    assert_eq!((data.rows, data.cols, data.q), (4914, 53, 21));
    let train = TrainSpec {
        chains: Some(200),
        k: Some(5),
        epochs: Some(3),
        ..Default::default()
    };
    let mut t = PottsTrainer::new(&potts_spec_reweighted(), &train, 1, data).unwrap();
    let mut reports = vec![];
    while t.epochs_done() < t.epochs_total() {
        reports.push(t.run_epoch(&|| false, &mut |_| {}).unwrap().unwrap());
    }
    let m = &reports.last().unwrap().metrics;
    assert!(m["m_eff"] > 500.0 && m["m_eff"] < 4914.0, "{m:?}");
    assert!(
        m["pearson"].is_finite() && m["pseudo_log_likelihood"] < 0.0,
        "{m:?}"
    );
    assert!(
        t.notes().iter().any(|n| n.contains("unknown residues")),
        "{:?}",
        t.notes()
    );
    let file = t.model_file().unwrap();
    let info = crate::model_file::inspect_model(&file).unwrap();
    assert_eq!((info.dims["sites"], info.dims["q"]), (53, 21));
    assert_eq!(info.metadata["alphabet"], "-ACDEFGHIKLMNPQRSTVWY");
}

fn potts_spec_reweighted() -> ModelSpec {
    ModelSpec {
        model_type: "potts".into(),
        ..Default::default()
    }
}
