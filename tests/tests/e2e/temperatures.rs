//! `observe` over a list of couplings or inverse temperatures of a lattice Ising model,
//! through the real server and CLI: on 4 x 4 every value (mean, variance, variance per site,
//! Binder cumulant) matches exact enumeration of the 2^16 states, computed here in f64; on
//! 16 x 16 the specific heat per spin matches Kaufman's exact finite-lattice curve.
use super::dca::{parse, run_job};
use ebm_e2e::process::{cli_json, ebm_cli};
use ebm_e2e::{assert_refused, StoreKind, TestServer};
use std::collections::BTreeMap;

/// Exact (mean, variance, Binder) of the energy and of the magnetization per spin of the
/// periodic 4 x 4 lattice with coupling `j` and field `h`.
fn exact(j: f64, h: f64) -> [[f64; 3]; 2] {
    let n = 4usize;
    let mut weights = Vec::with_capacity(1 << 16);
    let mut values = Vec::with_capacity(1 << 16);
    for k in 0..1usize << 16 {
        let s: Vec<f64> = (0..16)
            .map(|i| if (k >> i) & 1 == 1 { 1.0 } else { -1.0 })
            .collect();
        let mut e = 0.0;
        for r in 0..n {
            for c in 0..n {
                let x = s[r * n + c];
                e -= j * x * (s[r * n + (c + 1) % n] + s[((r + 1) % n) * n + c]) + h * x;
            }
        }
        weights.push(-e);
        values.push([e, s.iter().sum::<f64>() / 16.0]);
    }
    let max = weights.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let w: Vec<f64> = weights.iter().map(|x| (x - max).exp()).collect();
    let z: f64 = w.iter().sum();
    let mut out = [[0.0; 3]; 2];
    for (k, o) in out.iter_mut().enumerate() {
        let moment = |p: i32| -> f64 {
            w.iter()
                .zip(&values)
                .map(|(w, v)| w * v[k].powi(p))
                .sum::<f64>()
                / z
        };
        let (m1, m2, m4) = (moment(1), moment(2), moment(4));
        *o = [m1, m2 - m1 * m1, 1.0 - m4 / (3.0 * m2 * m2)];
    }
    out
}

/// Each reported value is within 5 of its reported (jackknife over 32 chains) standard
/// errors of the exact one: over the 5 points x 2 statistics x 4 values a false alarm has
/// probability ~ 40 x 6e-7. The errors must also be small (below 5% of the value's scale),
/// so the test cannot pass with meaningless error bars.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn observe_over_couplings_matches_exact_enumeration() {
    let server = TestServer::start(StoreKind::Sqlite).await;
    let client = &server.client;
    let field = 0.0625;
    let lattice = ebm_engine::lattice::LatticeIsing::new(4, 0.3, field as f32).unwrap();
    let file = ebm_engine::lattice::file::to_bytes(&lattice, &BTreeMap::new()).unwrap();
    let model = client
        .import_model("lattice_ising", "ising-4", file)
        .await
        .unwrap();
    let couplings = [0.2, 0.3, 0.4, 0.45, 0.6];
    for (k, statistic) in ["energy", "magnetization"].into_iter().enumerate() {
        let spec = parse(&format!(
            "kind = \"observe\"\nseed = 9\nmodel = \"{}\"\n[observe]\nstatistic = \"{statistic}\"\nsamples = 64000\nburn_in = 200\nchains = 32\ncouplings = {couplings:?}\n",
            model.id
        ));
        let job = run_job(client, statistic, spec).await;
        // read through the CLI: the job's JSON carries the points
        let output = ebm_cli(&server.url(), &["jobs", "get", &job.id]).await;
        let (ok, doc) = cli_json(&output);
        assert!(ok, "{doc}");
        let points = doc["result"]["points"].as_array().expect("points");
        assert_eq!(points.len(), couplings.len());
        for (p, &j) in points.iter().zip(&couplings) {
            let get = |name: &str| p[name].as_f64().unwrap_or(0.0);
            assert_eq!(get("coupling"), j);
            assert_eq!(get("field"), field);
            let [mean, variance, binder] = exact(j, field)[k];
            let per_site = if statistic == "energy" {
                variance / 16.0
            } else {
                variance * 16.0
            };
            let scale = if statistic == "energy" { 32.0 * j } else { 1.0 };
            for (name, want, bound) in [
                ("mean", mean, 0.05 * scale),
                ("variance", variance, 0.05 * variance),
                ("per_site", per_site, 0.05 * per_site),
                ("binder", binder, 0.05),
            ] {
                let (got, err) = (get(name), get(&format!("{name}_stderr")));
                assert!(
                    err > 0.0 && err < bound,
                    "{statistic} at J = {j}: {name} stderr {err} (bound {bound})"
                );
                assert!(
                    (got - want).abs() <= 5.0 * err,
                    "{statistic} at J = {j}: {name} = {got} ± {err}, exact {want}"
                );
            }
        }
    }

    // betas scale J and h together: beta = 2 on J = 0.3 is J = 0.6, h = 0.125
    let spec = parse(&format!(
        "kind = \"observe\"\nseed = 2\nmodel = \"{}\"\n[observe]\nstatistic = \"energy\"\nsamples = 32000\nchains = 16\nbetas = [0.5, 2.0]\n",
        model.id
    ));
    let job = run_job(client, "betas", spec).await;
    let points = job.result.unwrap().points;
    assert_eq!(points.len(), 2);
    assert!((points[1].coupling - 0.6).abs() < 1e-6 && (points[1].field - 0.125).abs() < 1e-6);
    assert_eq!(points[1].beta, 2.0);
    let [mean, _, _] = exact(points[1].coupling, points[1].field)[0];
    assert!((points[1].mean - mean).abs() <= 5.0 * points[1].mean_stderr);

    // refusals
    let observe = |section: &str| {
        parse(&format!(
            "kind = \"observe\"\nmodel = \"{}\"\n[observe]\n{section}",
            model.id
        ))
    };
    assert_refused(
        client,
        "both",
        observe("statistic = \"energy\"\nbetas = [1.0]\ncouplings = [0.3]\n"),
        "not both",
    )
    .await;
    assert_refused(
        client,
        "negative beta",
        observe("statistic = \"energy\"\nbetas = [-1.0]\n"),
        "betas",
    )
    .await;
    assert_refused(
        client,
        "too few chains",
        observe("statistic = \"energy\"\nchains = 2\ncouplings = [0.3]\n"),
        "chains",
    )
    .await;
    assert_refused(
        client,
        "statistic",
        observe("statistic = \"hamming_to\"\ncouplings = [0.3]\n"),
        "energy, magnetization",
    )
    .await;
    let many: Vec<f64> = (0..300).map(|k| k as f64 * 0.001).collect();
    assert_refused(
        client,
        "too many points",
        observe(&format!("statistic = \"energy\"\ncouplings = {many:?}\n")),
        "256",
    )
    .await;
    server.stop().await;
}

/// Specific heat per spin of the periodic L x L lattice at coupling K from Kaufman's exact
/// ln Z: c = K^2 / N d^2 ln Z / dK^2, the derivative by a central difference with step 1e-3
/// (truncation ~ 1e-7 relative, rounding ~ 1e-16 x 230 / 1e-6 = 2e-8).
fn exact_specific_heat(l: usize, k: f64) -> f64 {
    let d = 1e-3;
    let f = |x: f64| ebm_engine::estimate::kaufman::lattice_ising_log_z(l, l, x);
    k * k * (f(k + d) - 2.0 * f(k) + f(k - d)) / (d * d) / (l * l) as f64
}

/// On 16 x 16, through the server and the CLI, the specific heat per spin (`per_site` of the
/// energy: Var(E) / N) at 9 couplings around K_c matches the exact finite-lattice curve within
/// 5 of its jackknife standard errors (a 5-sigma miss at any point fails: with 9 points a
/// false alarm has probability ~ 5e-6), and the largest value sits where the exact curve's
/// largest value sits (slightly below K_c at this size). The grid K_c - 0.06 .. K_c + 0.02
/// in steps of 0.01: the exact curve peaks near K = 0.4317 (c = 1.552), so the grid's largest
/// exact value is at K_c - 0.01 (1.552), 0.053 above its larger neighbour (K_c: 1.499); with
/// errors ~0.009 per point the difference is ~4 sigma, so the argmax comparison is exact.
/// ~20 s on 2 cores.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn specific_heat_on_16x16_matches_kaufman() {
    let server = TestServer::start(StoreKind::Sqlite).await;
    let client = &server.client;
    let lattice = ebm_engine::lattice::LatticeIsing::new(16, 0.0, 0.0).unwrap();
    let file = ebm_engine::lattice::file::to_bytes(&lattice, &BTreeMap::new()).unwrap();
    let model = client
        .import_model("lattice_ising", "ising-16", file)
        .await
        .unwrap();
    let kc = 0.5 * (1.0 + 2f64.sqrt()).ln();
    let couplings: Vec<f64> = (0..9).map(|k| kc + 0.01 * (k as f64 - 6.0)).collect();
    let spec = parse(&format!(
        "kind = \"observe\"\nseed = 42\nmodel = \"{}\"\n[observe]\nstatistic = \"energy\"\nsamples = 96000\nburn_in = 300\nchains = 32\ncouplings = {couplings:?}\n",
        model.id
    ));
    let job = run_job(client, "kaufman", spec).await;
    let output = ebm_cli(&server.url(), &["jobs", "get", &job.id]).await;
    let (ok, doc) = cli_json(&output);
    assert!(ok, "{doc}");
    let points = doc["result"]["points"].as_array().expect("points");
    assert_eq!(points.len(), couplings.len());
    let exact: Vec<f64> = couplings
        .iter()
        .map(|&k| exact_specific_heat(16, k))
        .collect();
    let mut measured = Vec::new();
    for ((p, &k), &c) in points.iter().zip(&couplings).zip(&exact) {
        let get = |name: &str| p[name].as_f64().unwrap_or(f64::NAN);
        let (got, err) = (get("per_site"), get("per_site_stderr"));
        eprintln!("K = {k:.4}: c = {got:.4} ± {err:.4}, exact {c:.4}");
        assert!((get("coupling") - k).abs() < 1e-12, "{p}");
        assert!(err > 0.0 && err < 0.05 * c, "K = {k}: stderr {err}");
        assert!(
            (got - c).abs() <= 5.0 * err,
            "K = {k}: {got} ± {err} vs exact {c}"
        );
        measured.push(got);
    }
    let argmax = |v: &[f64]| (0..v.len()).max_by(|&a, &b| v[a].total_cmp(&v[b])).unwrap();
    let exact_peak = argmax(&exact);
    assert!(couplings[exact_peak] < kc, "the exact peak lies below K_c");
    assert_eq!(
        argmax(&measured),
        exact_peak,
        "measured peak at {} but the exact one at {}: {measured:?} vs {exact:?}",
        couplings[argmax(&measured)],
        couplings[exact_peak]
    );
}
