//! RNG, matrix product, RBM half steps, gradient statistics and updates vs CPU twins.

use super::*;
use crate::backend::cube::device::{finish, DeviceArray};
use crate::backend::cube::matmul::{matmul, Layout, Product};
use crate::backend::cube::philox::{draw_kernel, key_launch};
use crate::backend::cube::rbm::{self, Optimizer};

const F32_EPS: f64 = f32::EPSILON as f64;

/// Bound on |z_device - z_cpu| for the Box-Muller normal z = sqrt(-2 ln u0) cos(2 pi u1) of
/// element `index`, from Vulkan's precision floor for built-ins (which lavapipe may use):
/// ln has absolute error <= 2^-21 near 1 (else 3 ulp), and sqrt(x) turns an absolute error d
/// of x into at most sqrt(x) - sqrt(x - d), large when u0 is near 1; sin/cos have absolute
/// error <= 2^-11. A wrong element, stream or formula gives errors of order 1.
fn box_muller_tolerance(key: RngKey, index: u32) -> f64 {
    let w = key.words(index);
    let u0 = crate::rng::open_uniform_from_bits(w[0]) as f64;
    let x = -2.0 * u0.ln();
    let dx = 2.0 * (2f64.powi(-21) + 3.0 * F32_EPS * u0.ln().abs()) + 2.0 * F32_EPS * x;
    let r = x.sqrt();
    let dr = r - (x - dx).max(0.0).sqrt() + 2.0 * F32_EPS * r;
    dr + r * 2f64.powi(-11) + 4.0 * F32_EPS
}

fn sigmoid64(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

/// Uniforms, the raw words and normals of 1000 elements (not a multiple of the cube
/// size): words and uniforms bit for bit; normals within 2e-5 * (1 + |z|), the spread of
/// f32 ln/cos/sqrt between libm and the device (a few ulps each).
#[test]
fn philox_matches_cpu_bit_for_bit() {
    let client = client();
    let seed = test_seed("philox");
    let key = RngKey::new(seed, 7, (seed >> 3) ^ 0x1_0000_0001);
    let n = 1000usize;
    let words = DeviceArray::<u32>::zeros(&client, 4 * n);
    let uniforms = DeviceArray::<f32>::zeros(&client, n);
    let normals = DeviceArray::<f32>::zeros(&client, n);
    draw_kernel::launch::<TestRuntime>(
        &client,
        crate::backend::cube::device::cubes_for(n),
        crate::backend::cube::device::cube_dim(),
        key_launch(key),
        words.arg(),
        uniforms.arg(),
        normals.arg(),
        n as u32,
    );
    let words = words.download(&client).unwrap();
    let uniforms = uniforms.download(&client).unwrap();
    let normals = normals.download(&client).unwrap();
    for i in 0..n {
        let want = key.words(i as u32);
        assert_eq!(&words[4 * i..4 * i + 4], &want, "words of element {i}");
        assert_eq!(
            uniforms[i].to_bits(),
            key.uniform(i as u32).to_bits(),
            "uniform {i}"
        );
    }
    let want: Vec<f64> = (0..n).map(|i| key.normal(i as u32) as f64).collect();
    assert_within("normals", &normals, &want, |i| 2e-5 * (1.0 + want[i].abs()));
}

/// f64 reference of `alpha * op(A) op(B) + beta * out + bias`, and the rounding bound
/// of an f32 dot product of length k: k * eps * sum |a b| (Higham), doubled for safety.
#[allow(clippy::too_many_arguments)]
fn matmul_ref(
    p: Product,
    a: &[f32],
    b: &[f32],
    bias: Option<&[f32]>,
    out0: &[f32],
) -> (Vec<f64>, Vec<f64>) {
    let (m, n, k) = (p.m, p.n, p.k);
    let mut want = vec![0.0; m * n];
    let mut tol = vec![0.0; m * n];
    for r in 0..m {
        for c in 0..n {
            let (mut s, mut abs) = (0.0f64, 0.0f64);
            for t in 0..k {
                let av = match p.layout {
                    Layout::TransposedA => a[t * m + r],
                    _ => a[r * k + t],
                } as f64;
                let bv = match p.layout {
                    Layout::TransposedB => b[c * k + t],
                    _ => b[t * n + c],
                } as f64;
                s += av * bv;
                abs += (av * bv).abs();
            }
            let mut v = p.alpha as f64 * s + p.beta as f64 * out0[r * n + c] as f64;
            if let Some(bias) = bias {
                v += bias[c] as f64;
            }
            want[r * n + c] = v;
            tol[r * n + c] = 2.0
                * (k as f64 + 2.0)
                * F32_EPS
                * (abs * p.alpha.abs() as f64
                    + (p.beta as f64 * out0[r * n + c] as f64).abs()
                    + bias.map_or(0.0, |b| b[c].abs() as f64))
                + 1e-7;
        }
    }
    (want, tol)
}

/// The three layouts at sizes that are no multiple of the 64 x 64 x 16 tile, a single
/// row, and beta accumulation.
#[test]
fn matmul_matches_reference() {
    let client = client();
    let seed = test_seed("matmul");
    let cases = [
        (70, 37, 131, Layout::Plain, 1.0, 0.0, true),
        (1, 45, 23, Layout::Plain, 1.0, 0.0, true),
        (300, 45, 23, Layout::TransposedB, 1.0, 0.0, true),
        (45, 23, 129, Layout::TransposedA, 0.25, 0.0, false),
        (45, 23, 77, Layout::TransposedA, -0.5, 1.0, false),
    ];
    for (case, &(m, n, k, layout, alpha, beta, with_bias)) in cases.iter().enumerate() {
        let s = case as u32 * 4;
        let a = random_vec(seed, s, m * k, -1.0, 1.0);
        let b = random_vec(seed, s + 1, k * n, -1.0, 1.0);
        let bias = random_vec(seed, s + 2, n, -2.0, 2.0);
        let out0 = random_vec(seed, s + 3, m * n, -1.0, 1.0);
        let p = Product {
            m,
            n,
            k,
            layout,
            alpha,
            beta,
        };
        let (da, db) = (
            DeviceArray::upload(&client, &a),
            DeviceArray::upload(&client, &b),
        );
        let dbias = DeviceArray::upload(&client, &bias);
        let dout = DeviceArray::upload(&client, &out0);
        matmul(&client, p, &da, &db, with_bias.then_some(&dbias), &dout).unwrap();
        let got = dout.download(&client).unwrap();
        let (want, tol) = matmul_ref(p, &a, &b, with_bias.then_some(&bias[..]), &out0);
        assert_within(&format!("matmul case {case}"), &got, &want, |i| tol[i]);
    }
}

/// One Bernoulli half step h ~ p(h | v) = sigmoid(c + v W): probabilities within the
/// matmul bound (sigmoid' <= 1/4, plus 4 ulps for sigmoid itself); samples identical to
/// the CPU's `uniform < p` except where |uniform - p| is within that bound (a near tie,
/// where float rounding may decide either way). Near ties are counted: their expected
/// number is 2 * bound * draws (< 1e-3 here), so more than 2 fails.
#[test]
fn hidden_half_step_matches_cpu() {
    let client = client();
    let seed = test_seed("hidden_half_step");
    let (visible, hidden) = (45usize, 23usize);
    let w = random_vec(seed, 0, visible * hidden, -0.8, 0.8);
    let c = random_vec(seed, 1, hidden, -1.0, 1.0);
    let (dw, dc) = (
        DeviceArray::upload(&client, &w),
        DeviceArray::upload(&client, &c),
    );
    for chains in [1usize, 300] {
        let v = random_bits(seed, 2 + chains as u32, chains * visible);
        let dv = DeviceArray::upload(&client, &v);
        let pre = DeviceArray::<f32>::zeros(&client, chains * hidden);
        let prob = DeviceArray::<f32>::zeros(&client, chains * hidden);
        let sample = DeviceArray::<f32>::zeros(&client, chains * hidden);
        let ones = DeviceArray::upload(&client, &vec![1.0f32; chains]);
        let key = RngKey::new(seed, 3, chains as u64);
        let p = Product {
            m: chains,
            n: hidden,
            k: visible,
            layout: Layout::Plain,
            alpha: 1.0,
            beta: 0.0,
        };
        matmul(&client, p, &dv, &dw, Some(&dc), &pre).unwrap();
        rbm::sample_bernoulli(
            &client, &pre, &ones, &dc, &prob, &sample, key, hidden, 1.0, 0.0, true, true,
        );
        let (got_p, got_h) = (
            prob.download(&client).unwrap(),
            sample.download(&client).unwrap(),
        );
        let (pre_want, pre_tol) = matmul_ref(p, &v, &w, Some(&c), &vec![0.0; chains * hidden]);
        let bound: Vec<f64> = pre_tol.iter().map(|t| 0.25 * t + 4.0 * F32_EPS).collect();
        let p_want: Vec<f64> = pre_want.iter().map(|&x| sigmoid64(x)).collect();
        assert_within("hidden probabilities", &got_p, &p_want, |i| bound[i]);
        let mut near_ties = 0;
        for i in 0..chains * hidden {
            let u = key.uniform(i as u32) as f64;
            let want = if u < p_want[i] { 1.0 } else { 0.0 };
            if got_h[i] != want {
                assert!(
                    (u - p_want[i]).abs() <= bound[i],
                    "sample {i} differs off a tie"
                );
                near_ties += 1;
            }
        }
        eprintln!("chains {chains}: {near_ties} near-tie mismatches");
        assert!(near_ties <= 2, "{near_ties} near ties");
    }
}

/// Gaussian visible half step v ~ N(b + sigma * (h W^T), sigma^2): means within the matmul
/// bound scaled by sigma; samples within that plus sigma * the normal's device tolerance.
#[test]
fn gaussian_half_step_matches_cpu() {
    let client = client();
    let seed = test_seed("gaussian_half_step");
    let (visible, hidden, chains) = (29usize, 11usize, 263usize);
    let w = random_vec(seed, 0, visible * hidden, -0.5, 0.5);
    let b = random_vec(seed, 1, visible, -1.0, 1.0);
    let sigma = random_vec(seed, 2, visible, 0.5, 2.0);
    let h = random_bits(seed, 3, chains * hidden);
    let key = RngKey::new(seed, 4, 0);
    let (dw, dh) = (
        DeviceArray::upload(&client, &w),
        DeviceArray::upload(&client, &h),
    );
    let (db, ds) = (
        DeviceArray::upload(&client, &b),
        DeviceArray::upload(&client, &sigma),
    );
    let wh = DeviceArray::<f32>::zeros(&client, chains * visible);
    let mean = DeviceArray::<f32>::zeros(&client, chains * visible);
    let sample = DeviceArray::<f32>::zeros(&client, chains * visible);
    let p = Product {
        m: chains,
        n: visible,
        k: hidden,
        layout: Layout::TransposedB,
        alpha: 1.0,
        beta: 0.0,
    };
    matmul(&client, p, &dh, &dw, None, &wh).unwrap();
    rbm::sample_gaussian(
        &client, &wh, &db, &ds, &ds, &mean, &sample, key, visible, 1.0,
    );
    let (wh_want, wh_tol) = matmul_ref(p, &h, &w, None, &vec![0.0; chains * visible]);
    let mean_want: Vec<f64> = (0..chains * visible)
        .map(|i| b[i % visible] as f64 + sigma[i % visible] as f64 * wh_want[i])
        .collect();
    let mean_tol = |i: usize| {
        sigma[i % visible] as f64 * wh_tol[i] + 4.0 * F32_EPS * (1.0 + mean_want[i].abs())
    };
    assert_within(
        "gaussian means",
        &mean.download(&client).unwrap(),
        &mean_want,
        mean_tol,
    );
    let sample_want: Vec<f64> = (0..chains * visible)
        .map(|i| mean_want[i] + sigma[i % visible] as f64 * key.normal(i as u32) as f64)
        .collect();
    assert_within(
        "gaussian samples",
        &sample.download(&client).unwrap(),
        &sample_want,
        |i| mean_tol(i) + sigma[i % visible] as f64 * box_muller_tolerance(key, i as u32),
    );
    finish(&client).unwrap();
}

/// CD/PCD gradient statistics on the device: dW = v_d^T p_d / B - v_m^T p_m / M,
/// db = mean v_d - mean v_m, then an SGD-with-momentum step and an Adam step, each
/// against f64 twins (tolerances: the matmul bound, then a few ulps per operation).
#[test]
fn gradient_and_update_match_cpu() {
    let client = client();
    let seed = test_seed("gradient_and_update");
    let (visible, hidden, batch, model) = (37usize, 19usize, 10usize, 301usize);
    let vd = random_bits(seed, 0, batch * visible);
    let pd = random_vec(seed, 1, batch * hidden, 0.0, 1.0);
    let vm = random_bits(seed, 2, model * visible);
    let pm = random_vec(seed, 3, model * hidden, 0.0, 1.0);
    let up = |x: &[f32]| DeviceArray::upload(&client, x);
    let (dvd, dpd, dvm, dpm) = (up(&vd), up(&pd), up(&vm), up(&pm));
    let grad_w = DeviceArray::<f32>::zeros(&client, visible * hidden);
    let grad_b = DeviceArray::<f32>::zeros(&client, visible);
    let stat = |batch_rows: usize, alpha: f32, beta: f32| Product {
        m: visible,
        n: hidden,
        k: batch_rows,
        layout: Layout::TransposedA,
        alpha,
        beta,
    };
    matmul(
        &client,
        stat(batch, 1.0 / batch as f32, 0.0),
        &dvd,
        &dpd,
        None,
        &grad_w,
    )
    .unwrap();
    matmul(
        &client,
        stat(model, -1.0 / model as f32, 1.0),
        &dvm,
        &dpm,
        None,
        &grad_w,
    )
    .unwrap();
    rbm::column_sums(
        &client,
        &dvd,
        &grad_b,
        batch,
        visible,
        1.0 / batch as f32,
        0.0,
    );
    rbm::column_sums(
        &client,
        &dvm,
        &grad_b,
        model,
        visible,
        -1.0 / model as f32,
        1.0,
    );

    let mut gw_want = vec![0.0f64; visible * hidden];
    let mut gw_tol = vec![0.0f64; visible * hidden];
    for i in 0..visible {
        for j in 0..hidden {
            let d: f64 = (0..batch)
                .map(|n| (vd[n * visible + i] * pd[n * hidden + j]) as f64)
                .sum();
            let m: f64 = (0..model)
                .map(|n| (vm[n * visible + i] * pm[n * hidden + j]) as f64)
                .sum();
            gw_want[i * hidden + j] = d / batch as f64 - m / model as f64;
            gw_tol[i * hidden + j] =
                4.0 * (model as f64 + 2.0) * F32_EPS * (d / batch as f64 + m / model as f64) + 1e-7;
        }
    }
    let got_w = grad_w.download(&client).unwrap();
    assert_within("weight gradient", &got_w, &gw_want, |i| gw_tol[i]);
    let gb_want: Vec<f64> = (0..visible)
        .map(|i| {
            let d: f64 = (0..batch).map(|n| vd[n * visible + i] as f64).sum::<f64>() / batch as f64;
            let m: f64 = (0..model).map(|n| vm[n * visible + i] as f64).sum::<f64>() / model as f64;
            d - m
        })
        .collect();
    assert_within(
        "bias gradient",
        &grad_b.download(&client).unwrap(),
        &gb_want,
        |_| 4.0 * (model as f64) * F32_EPS,
    );

    // Updates, from the device gradient (so only the update arithmetic is compared).
    let w0 = random_vec(seed, 4, visible * hidden, -1.0, 1.0);
    let vel0 = random_vec(seed, 5, visible * hidden, -0.1, 0.1);
    let sq0 = random_vec(seed, 6, visible * hidden, 0.0, 0.01);
    let (lr, l2, l1) = (0.05f32, 1e-3f32, 1e-4f32);
    for (optimizer, t) in [
        (Optimizer::Sgd { momentum: 0.5 }, 1u64),
        (
            Optimizer::Adam {
                beta1: 0.9,
                beta2: 0.999,
                epsilon: 1e-8,
            },
            3u64,
        ),
    ] {
        let (dparam, dm1, dm2) = (up(&w0), up(&vel0), up(&sq0));
        rbm::update(
            &client,
            &dparam,
            &grad_w,
            &dm1,
            Some(&dm2),
            optimizer,
            lr,
            l2,
            l1,
            t,
        )
        .unwrap();
        let got = dparam.download(&client).unwrap();
        let want: Vec<f64> = (0..w0.len())
            .map(|i| {
                let w = w0[i] as f64;
                let g = got_w[i] as f64 - l2 as f64 * w - l1 as f64 * w.signum();
                match optimizer {
                    Optimizer::Sgd { momentum } => {
                        w + momentum as f64 * vel0[i] as f64 + lr as f64 * g
                    }
                    Optimizer::Adam {
                        beta1,
                        beta2,
                        epsilon,
                    } => {
                        let (b1, b2) = (beta1 as f64, beta2 as f64);
                        let m1 = b1 * vel0[i] as f64 + (1.0 - b1) * g;
                        let m2 = b2 * sq0[i] as f64 + (1.0 - b2) * g * g;
                        let step = (m1 / (1.0 - b1.powi(t as i32)))
                            / ((m2 / (1.0 - b2.powi(t as i32))).sqrt() + epsilon as f64);
                        w + lr as f64 * step
                    }
                }
            })
            .collect();
        // ~10 f32 operations on values of order 1: 32 ulps of the result's scale.
        assert_within(&format!("{optimizer:?} update"), &got, &want, |i| {
            32.0 * F32_EPS * (1.0 + want[i].abs())
        });
    }
    let bad = up(&[1.0, f32::NAN, 2.0]);
    assert!(rbm::any_nonfinite(&client, &bad).unwrap());
    assert!(!rbm::any_nonfinite(&client, &grad_w).unwrap());
    assert!(rbm::any_nonfinite(&client, &up(&[f32::INFINITY])).unwrap());
}
