//! Macrostates against known answers: the 51% example, a magnet below and above T_c,
//! and the annealed most likely state against enumeration.

use super::statistic::Statistic;
use super::{observe_chains, ChainPlan};
use crate::estimate::chains::lattice::{LatticeChains, LatticeParams};
use crate::estimate::chains::rbm::{RbmChains, RbmParams};
use crate::estimate::chains::ModelChains;
use crate::rng::RngStream;
use crate::sample::sample_chains;

fn observe(
    chains: &mut dyn ModelChains,
    stat: &Statistic,
    plan: ChainPlan,
    bins: usize,
) -> super::ObserveReport {
    let mut rng = RngStream::new(5, 11);
    observe_chains(chains, stat, &plan, bins, &mut rng, &|| false, &mut |_| {}).unwrap()
}

fn independent_pixels(p_on: f64, pixels: usize) -> RbmParams {
    RbmParams {
        visible: pixels,
        hidden: 4,
        weights: vec![0.0; pixels * 4],
        visible_bias: vec![(p_on / (1.0 - p_on)).ln() as f32; pixels],
        hidden_bias: vec![0.0; 4],
    }
}

/// DESIGN's 51% example: 64 pixels, each on with p = 0.49. The fraction on is
/// Binomial(64, 0.49) / 64: mean 0.49, sd 0.0625, mode at 31/64 = 0.484 (its pmf at 32/64
/// is 0.9% lower). With 65 bins each lattice value has its own bin (width 1/64). 10^4
/// independent draws (zero weights: every Gibbs step is an exact draw) give the mean to
/// 0.000625 (1 se), so the 0.01 tolerance is 16 se; the smoothed histogram peaks at 31/64
/// or 32/64, both within one bin of 0.48-0.49. The most likely microstate is all off.
#[test]
fn the_51_percent_example() {
    let params = independent_pixels(0.49, 64);
    let mut chains = RbmChains::new(params.clone(), params.visible_bias.clone(), 16).unwrap();
    let plan = ChainPlan {
        samples: 10_000,
        burn_in: 10,
        thin: 1,
        chains: 16,
    };
    let r = observe(&mut chains, &Statistic::FractionOn, plan, 65);
    let width = r.summary.histogram.edges[1] - r.summary.histogram.edges[0];
    assert!((width - 1.0 / 64.0).abs() < 1e-12);
    assert!(
        r.summary.mode > 0.48 - width && r.summary.mode < 0.49 + width,
        "{r:?}"
    );
    assert!((r.summary.mean - 0.49).abs() < 0.01, "{r:?}");
    assert_eq!(r.summary.modes.len(), 1, "{:?}", r.summary.modes);
    assert_eq!(r.map_statistic, 0.0);
    assert!(r.map_exact);
    // Independent draws: ESS near the sample count, chains agree.
    assert!(r.summary.ess > 0.7 * 10_000.0, "{}", r.summary.ess);
    assert!((r.summary.r_hat - 1.0).abs() < 0.05, "{}", r.summary.r_hat);
    assert!(r.summary.std > 0.05 && r.summary.std < 0.075);
}

/// An 8 x 8 torus at K = 0.6 (T = 0.73 T_c): the magnetisation sits near ±0.97 and the
/// Swendsen-Wang moves carry every chain between the two signs, so the histogram has two
/// peaks with an almost empty valley; the report must say two modes, of opposite sign,
/// while the mean is near 0 (|mean| < 0.3 allows for unequal time in each sign). At
/// K = 0.3 (T = 1.47 T_c) on 16 x 16 there is one mode, near 0.
#[test]
fn a_magnet_below_t_c_has_two_magnetization_modes() {
    let plan = ChainPlan {
        samples: 4_000,
        burn_in: 100,
        thin: 1,
        chains: 8,
    };
    let mut cold = LatticeChains::new(
        LatticeParams {
            size: 8,
            coupling: 0.6,
            field: 0.0,
        },
        8,
    )
    .unwrap();
    let r = observe(&mut cold, &Statistic::Magnetization, plan, 65);
    assert_eq!(
        r.summary.modes.len(),
        2,
        "{:?} {:?}",
        r.summary.modes,
        r.summary.histogram.counts
    );
    let (a, b) = (r.summary.modes[0].value, r.summary.modes[1].value);
    assert!(a * b < 0.0 && a.abs() > 0.8 && b.abs() > 0.8, "{a} {b}");
    assert!(r.summary.mean.abs() < 0.3, "{}", r.summary.mean);
    assert_eq!(r.map_statistic.abs(), 1.0);

    let mut hot = LatticeChains::new(
        LatticeParams {
            size: 16,
            coupling: 0.3,
            field: 0.0,
        },
        8,
    )
    .unwrap();
    let r = observe(&mut hot, &Statistic::Magnetization, plan, 65);
    assert_eq!(
        r.summary.modes.len(),
        1,
        "{:?} {:?}",
        r.summary.modes,
        r.summary.histogram.counts
    );
    assert!(r.summary.mode.abs() < 0.1, "{}", r.summary.mode);
}

/// Annealing finds the exact most likely visible state of a small RBM with strong
/// weights (checked against all 2^10 states by free energy).
#[test]
fn annealing_finds_the_most_likely_state_of_a_small_rbm() {
    let params = crate::estimate::tests::random_rbm(10, 4, 1.5, 3);
    let best = (0u32..1 << 10)
        .map(|bits| {
            let v: Vec<f32> = (0..10).map(|i| (bits >> i & 1) as f32).collect();
            params.log_marginal(&v)
        })
        .fold(f64::NEG_INFINITY, f64::max);
    let mut chains = RbmChains::new(params.clone(), params.visible_bias.clone(), 8).unwrap();
    let mut rng = RngStream::new(1, 2);
    let map = super::map::most_likely_state(&mut chains, &mut rng, &|| false).unwrap();
    assert!(!map.exact);
    assert!(
        (map.log_target - best).abs() < 1e-9,
        "{} vs {best}",
        map.log_target
    );
}

/// Sample matrices: shape, chain-major layout, and the marginal of independent pixels
/// (p = 0.3; 40 x 100 = 4000 draws per pixel column pooled over 20 pixels gives the mean
/// to 0.0032, the tolerance 0.02 is 6 se).
#[test]
fn samples_have_the_right_shape_and_marginals() {
    let params = independent_pixels(0.3, 20);
    let mut chains = RbmChains::new(params.clone(), params.visible_bias.clone(), 40).unwrap();
    let plan = ChainPlan {
        samples: 3_990,
        burn_in: 5,
        thin: 2,
        chains: 40,
    };
    let mut rng = RngStream::new(9, 1);
    let m = sample_chains(&mut chains, &plan, &mut rng, &|| false, &mut |_| {}).unwrap();
    assert_eq!((m.rows, m.cols, m.draws_per_chain), (4000, 20, 100));
    assert!(m.values.iter().all(|&x| x == 0.0 || x == 1.0));
    let mean = m.values.iter().map(|&x| x as f64).sum::<f64>() / m.values.len() as f64;
    assert!((mean - 0.3).abs() < 0.02, "{mean}");
    // Stopping is honoured.
    let stopped = sample_chains(&mut chains, &plan, &mut rng, &|| true, &mut |_| {});
    assert_eq!(stopped, Err(crate::error::EngineError::Interrupted));
}

/// The linear forms that device chains reduce (`Statistic::as_linear`) equal the host
/// definitions on every state, for 0/1 units and +-1 spins (exact up to f64 rounding).
#[test]
fn linear_forms_equal_the_definitions() {
    let rbm = RbmChains::new(independent_pixels(0.3, 9), vec![0.0; 9], 1).unwrap();
    let params = LatticeParams {
        size: 3,
        coupling: 0.2,
        field: 0.0,
    };
    let lattice = LatticeChains::new(params, 1).unwrap();
    let models: [&dyn ModelChains; 2] = [&rbm, &lattice];
    for model in models {
        let n = model.units();
        let (lo, hi) = match model.encoding() {
            crate::estimate::chains::Encoding::Spin => (-1.0f32, 1.0f32),
            _ => (0.0, 1.0),
        };
        let state_of = |bits: u32| -> Vec<f32> {
            (0..n)
                .map(|i| if bits >> i & 1 == 1 { hi } else { lo })
                .collect()
        };
        let reference = state_of(0b1_0110_1001);
        let weights: Vec<f32> = (0..n).map(|i| i as f32 * 0.25 - 1.0).collect();
        for name in ["fraction_on", "magnetization", "hamming_to", "projection"] {
            let stat = Statistic::parse(name, &reference, &weights, &[], model).unwrap();
            let (w, scale, offset) = stat.as_linear(n, model.encoding()).unwrap();
            for bits in 0..1u32 << n {
                let state = state_of(bits);
                let linear = scale
                    * w.iter()
                        .zip(&state)
                        .map(|(&w, &x)| w as f64 * x as f64)
                        .sum::<f64>()
                    + offset;
                let want = stat.value(&state, model);
                assert!(
                    (linear - want).abs() < 1e-9,
                    "{name} {bits:b}: {linear} vs {want}"
                );
            }
        }
        // energy and correlation have no linear form
        let energy = Statistic::parse("energy", &[], &[], &[], model).unwrap();
        assert!(energy.as_linear(n, model.encoding()).is_none());
    }
}

/// Categorical states: the one-hot linear forms (`fraction_on`, `hamming_to`,
/// `projection`) and the order parameter from counts per state (`magnetization`) equal
/// the host definitions on every state of 4 sites with q = 3 (81 states; exact up to f64
/// rounding, the projection's f32 products w_i a to 1e-6).
#[test]
fn categorical_forms_equal_the_definitions() {
    use super::statistic::potts_order_parameter;
    use crate::estimate::chains::potts::PottsChains;
    use crate::estimate::tests::random_potts;
    let (n, q) = (4usize, 3usize);
    let potts = PottsChains::new(random_potts(n, q, 0.5, 3), 1).unwrap();
    let model: &dyn ModelChains = &potts;
    let state_of = |code: usize| -> Vec<f32> {
        (0..n)
            .map(|i| (code / q.pow(i as u32) % q) as f32)
            .collect()
    };
    let reference = state_of(47);
    let weights = [0.5f32, -1.25, 2.0, 0.75];
    for name in ["fraction_on", "hamming_to", "projection", "magnetization"] {
        let stat = Statistic::parse(name, &reference, &weights, &[], model).unwrap();
        let linear = stat.as_linear(n, model.encoding());
        assert_eq!(linear.is_some(), name != "magnetization", "{name}");
        for code in 0..q.pow(n as u32) {
            let state = state_of(code);
            let want = stat.value(&state, model);
            let got = match &linear {
                Some((w, scale, offset)) => {
                    let sum: f64 = (0..n).map(|i| w[i * q + state[i] as usize] as f64).sum();
                    scale * sum + offset
                }
                None => {
                    let mut counts = vec![0u32; q];
                    state.iter().for_each(|&x| counts[x as usize] += 1);
                    potts_order_parameter(&counts, n)
                }
            };
            assert!(
                (got - want).abs() < 1e-6,
                "{name} {state:?}: {got} vs {want}"
            );
        }
    }
}
