//! The CPU backend: plain Rust, f32, GEMM from the `gemm` crate and row-parallel
//! elementwise work via rayon. It is the reference every other backend is checked against,
//! and the fast path on machines without a GPU. No allocation per element; the few
//! temporaries are per call.

pub mod elementwise;
pub mod gemm;
pub mod lookup;
pub mod small_gemm;
pub mod team;

mod columns;
mod hidden;
pub(crate) mod parallel;

use self::columns::*;
use self::gemm::{matmul, View};
use self::hidden::*;
pub(crate) use self::parallel::vectorised;
use self::parallel::*;
use super::{
    Backend, BackendKind, HiddenPass, Offsets, OptimizerRule, RbmGradient, RbmTensors, UpdateRule,
    VisibleUnits,
};
use crate::error::{EngineError, Result};
use crate::rng::RngKey;
use rayon::prelude::*;

/// A row-major matrix in host memory.
#[derive(Clone, Debug, PartialEq)]
pub struct CpuMatrix {
    pub rows: usize,
    pub cols: usize,
    pub data: Vec<f32>,
}

impl CpuMatrix {
    pub fn zeros(rows: usize, cols: usize) -> Self {
        CpuMatrix {
            rows,
            cols,
            data: vec![0.0; rows * cols],
        }
    }
    fn view(&self) -> View<'_> {
        View::new(&self.data, self.rows, self.cols)
    }
}

fn check_shape(what: &str, m: &CpuMatrix, rows: usize, cols: usize) -> Result<()> {
    if m.rows != rows || m.cols != cols {
        return Err(EngineError::Internal(format!(
            "{what} is {}x{}, expected {rows}x{cols}",
            m.rows, m.cols
        )));
    }
    Ok(())
}

/// The CPU backend (stateless: threads come from rayon's global pool).
#[derive(Clone, Copy, Debug, Default)]
pub struct CpuBackend;

impl CpuBackend {
    pub fn new() -> Self {
        CpuBackend
    }

    /// The hidden units' products `v W` of every set by table lookup ([`lookup`]), if they
    /// qualify: Bernoulli visible units, all entries 0 or 1, enough rows and hidden units.
    /// False (nothing written) otherwise.
    fn hidden_by_lookup<const N: usize>(
        &self,
        params: &RbmTensors<CpuMatrix>,
        sets: [(&CpuMatrix, &mut CpuMatrix); N],
    ) -> bool {
        let (nv, nh) = (params.w.rows, params.w.cols);
        let rows: usize = sets.iter().map(|(v, _)| v.rows).sum();
        if !lookup::enabled()
            || params.units != VisibleUnits::Bernoulli
            || rows < lookup::MIN_ROWS
            || nh < lookup::MIN_COLUMNS
        {
            return false;
        }
        let mut codes: [lookup::Codes; N] = std::array::from_fn(|_| lookup::take());
        let binary = codes
            .iter_mut()
            .zip(&sets)
            .all(|(c, (v, _))| c.of_rows(&v.data, v.rows, nv));
        if binary {
            let mut i = 0;
            let mut targets = sets.map(|(_, probs)| {
                i += 1;
                lookup::Target {
                    codes: &codes[i - 1],
                    dst: &mut probs.data,
                }
            });
            let w = [(&params.w.data[..], 1.0)];
            lookup::multiply(
                &mut targets,
                &lookup::Factor::Rows { parts: &w, n: nh },
                false,
            );
        }
        codes.into_iter().for_each(lookup::give_back);
        binary
    }

    /// `means = h W^T` by table lookup with W's columns read through transposed tiles, if
    /// h qualifies: all entries 0 or 1 (sampled hidden states), enough rows and visible
    /// units. False (nothing written) otherwise.
    fn visible_by_lookup(
        &self,
        params: &RbmTensors<CpuMatrix>,
        hidden: &CpuMatrix,
        means: &mut CpuMatrix,
    ) -> bool {
        let (nv, nh) = (params.w.rows, params.w.cols);
        if !lookup::enabled() || hidden.rows < lookup::MIN_ROWS || nv < lookup::MIN_COLUMNS {
            return false;
        }
        let mut codes = lookup::take();
        let binary = codes.of_rows(&hidden.data, hidden.rows, nh);
        if binary {
            let w_t = lookup::Factor::Transposed {
                w: &params.w.data,
                k: nh,
                n: nv,
            };
            let target = lookup::Target {
                codes: &codes,
                dst: &mut means.data,
            };
            lookup::multiply(&mut [target], &w_t, false);
        }
        lookup::give_back(codes);
        binary
    }

    /// `w (+)= sum over terms of scale * v^T h` (the weight gradient's products) by
    /// table lookup, if the visible rows qualify as in [`Self::hidden_by_lookup`]. False
    /// (nothing written) otherwise.
    fn weight_products_by_lookup(
        &self,
        w: &mut CpuMatrix,
        units: VisibleUnits,
        terms: [(&CpuMatrix, &CpuMatrix, f32); 2],
        accumulate: bool,
    ) -> bool {
        let (nv, nh) = (w.rows, w.cols);
        let rows: usize = terms.iter().map(|(v, _, _)| v.rows).sum();
        if !lookup::enabled()
            || units != VisibleUnits::Bernoulli
            || rows < lookup::MIN_ROWS
            || nh < lookup::MIN_COLUMNS
            || nv < lookup::MIN_ROWS
        {
            return false;
        }
        let mut codes = lookup::take();
        let binary = codes.of_columns(&terms.map(|(v, _, _)| &v.data[..]), nv);
        if binary {
            let parts = terms.map(|(_, h, scale)| (&h.data[..], scale));
            let target = lookup::Target {
                codes: &codes,
                dst: &mut w.data,
            };
            let factor = lookup::Factor::Rows {
                parts: &parts,
                n: nh,
            };
            lookup::multiply(&mut [target], &factor, accumulate);
        }
        lookup::give_back(codes);
        binary
    }

    /// x = v / sigma for Gaussian units (a scaled copy), or v itself.
    fn scaled_visible<'a>(
        &self,
        params: &RbmTensors<CpuMatrix>,
        visible: &'a CpuMatrix,
    ) -> std::borrow::Cow<'a, CpuMatrix> {
        match (&params.units, &params.sigma) {
            (VisibleUnits::Gaussian, Some(sigma)) => {
                let mut x = visible.clone();
                x.data
                    .par_chunks_mut(x.cols)
                    .with_min_len(rows_per_task(x.cols))
                    .for_each(|row| {
                        for (v, s) in row.iter_mut().zip(&sigma.data) {
                            *v /= *s;
                        }
                    });
                std::borrow::Cow::Owned(x)
            }
            _ => std::borrow::Cow::Borrowed(visible),
        }
    }
}

impl Backend for CpuBackend {
    type Matrix = CpuMatrix;

    fn kind(&self) -> BackendKind {
        BackendKind::Cpu
    }

    fn upload(&self, rows: usize, cols: usize, values: &[f32]) -> Result<CpuMatrix> {
        if values.len() != rows * cols {
            return Err(EngineError::Internal(format!(
                "upload of {} values into a {rows}x{cols} matrix",
                values.len()
            )));
        }
        Ok(CpuMatrix {
            rows,
            cols,
            data: values.to_vec(),
        })
    }

    fn download(&self, m: &CpuMatrix) -> Result<Vec<f32>> {
        Ok(m.data.clone())
    }

    fn zeros(&self, rows: usize, cols: usize) -> Result<CpuMatrix> {
        Ok(CpuMatrix::zeros(rows, cols))
    }

    fn shape(&self, m: &CpuMatrix) -> (usize, usize) {
        (m.rows, m.cols)
    }

    fn copy(&self, src: &CpuMatrix, dst: &mut CpuMatrix) -> Result<()> {
        check_shape("copy destination", dst, src.rows, src.cols)?;
        dst.data.copy_from_slice(&src.data);
        Ok(())
    }

    fn gather_rows(&self, src: &CpuMatrix, rows: &[u32], dst: &mut CpuMatrix) -> Result<()> {
        check_shape("gather destination", dst, rows.len(), src.cols)?;
        if let Some(&r) = rows.iter().find(|&&r| r as usize >= src.rows) {
            return Err(EngineError::Internal(format!(
                "row {r} out of {}",
                src.rows
            )));
        }
        // over the team: a batch of 100 Fashion-MNIST rows (313 KB) took 37 us on one thread
        let cols = src.cols;
        for_row_blocks_from(
            LIGHT_PARALLEL_ELEMENTS,
            &mut dst.data,
            cols,
            |first, block| {
                let rows = &rows[first..];
                for (out, &r) in block.chunks_exact_mut(cols.max(1)).zip(rows) {
                    let r = r as usize;
                    out.copy_from_slice(&src.data[r * cols..(r + 1) * cols]);
                }
            },
        );
        Ok(())
    }

    fn swap_rows(&self, a: &mut CpuMatrix, b: &mut CpuMatrix, mask: &[bool]) -> Result<()> {
        check_shape("swap partner", b, a.rows, a.cols)?;
        let cols = a.cols;
        for (r, &swap) in mask.iter().enumerate().take(a.rows) {
            if swap {
                a.data[r * cols..(r + 1) * cols]
                    .swap_with_slice(&mut b.data[r * cols..(r + 1) * cols]);
            }
        }
        Ok(())
    }

    fn sample_hidden(
        &self,
        params: &RbmTensors<CpuMatrix>,
        visible: &CpuMatrix,
        beta: f32,
        key: RngKey,
        probs: &mut CpuMatrix,
        states: Option<&mut CpuMatrix>,
    ) -> Result<()> {
        let (n, nv, nh) = (visible.rows, params.w.rows, params.w.cols);
        check_shape("visible", visible, n, nv)?;
        check_shape("hidden probabilities", probs, n, nh)?;
        if self.hidden_by_lookup(params, [(visible, &mut *probs)]) {
            return hidden_from_inputs(&params.c.data, beta, key, probs, states);
        }
        let x = self.scaled_visible(params, visible);
        matmul(&mut probs.data, x.view(), params.w.view(), 1.0, false);
        hidden_from_inputs(&params.c.data, beta, key, probs, states)
    }

    /// One product over the stacked rows of both sets: the `gemm` crate then packs W once
    /// and runs taller tiles. 784 x 500 with 100 + 100 rows: 685 us against 2 x 455 us
    /// (`rbm_epoch products`, Xeon VM). Smaller sets go one by one (to the small-batch
    /// kernels), as do narrow layers (fewer hidden units than
    /// stacked rows): there W is small, packing it twice costs less than copying the
    /// visible rows into the stack (784 x 20 at batch 100: the pair took 68-80 us alone
    /// against 139 us stacked, most of it the copy).
    fn sample_hidden_pair(
        &self,
        params: &RbmTensors<CpuMatrix>,
        first: HiddenPass<'_, CpuMatrix>,
        second: HiddenPass<'_, CpuMatrix>,
    ) -> Result<()> {
        let (nv, nh) = (params.w.rows, params.w.cols);
        let (na, nb) = (first.visible.rows, second.visible.rows);
        for (pass, rows) in [(&first, na), (&second, nb)] {
            check_shape("visible", pass.visible, rows, nv)?;
            check_shape("hidden probabilities", pass.probs, rows, nh)?;
        }
        if self.hidden_by_lookup(
            params,
            [
                (first.visible, &mut *first.probs),
                (second.visible, &mut *second.probs),
            ],
        ) {
            for pass in [first, second] {
                hidden_from_inputs(&params.c.data, 1.0, pass.key, pass.probs, pass.states)?;
            }
            return Ok(());
        }
        if na.min(nb) < STACKED_MIN_ROWS || nh < na + nb {
            first.sample_alone(self, params)?;
            return second.sample_alone(self, params);
        }
        let (xa, xb) = (
            self.scaled_visible(params, first.visible),
            self.scaled_visible(params, second.visible),
        );
        STACKED.with(|scratch| {
            let (inputs, products) = &mut *scratch.borrow_mut();
            // (over the team: 40 us on one thread for 2 x 100 Fashion-MNIST rows; every
            // value is overwritten, so the buffer's old contents may stay)
            inputs.resize((na + nb) * nv, 0.0);
            for_row_blocks_from(LIGHT_PARALLEL_ELEMENTS, inputs, nv, |first, block| {
                for (r, out) in block.chunks_exact_mut(nv.max(1)).enumerate() {
                    let row = first + r;
                    let (set, at) = if row < na {
                        (&xa.data, row)
                    } else {
                        (&xb.data, row - na)
                    };
                    out.copy_from_slice(&set[at * nv..(at + 1) * nv]);
                }
            });
            products.resize((na + nb) * nh, 0.0);
            let stacked = View::new(inputs, na + nb, nv);
            matmul(products, stacked, params.w.view(), 1.0, false);
            hidden_from_stacked(products, &params.c.data, [(0, first), (na, second)])
        })
    }

    fn sample_visible(
        &self,
        params: &RbmTensors<CpuMatrix>,
        hidden: &CpuMatrix,
        beta: f32,
        key: RngKey,
        means: &mut CpuMatrix,
        states: &mut CpuMatrix,
    ) -> Result<()> {
        let (n, nv, nh) = (hidden.rows, params.w.rows, params.w.cols);
        check_shape("hidden", hidden, n, nh)?;
        check_shape("visible means", means, n, nv)?;
        check_shape("visible states", states, n, nv)?;
        if !self.visible_by_lookup(params, hidden, means) {
            matmul(
                &mut means.data,
                hidden.view(),
                params.w.view().t(),
                1.0,
                false,
            );
        }
        let b = &params.b.data;
        match params.units {
            VisibleUnits::Bernoulli => {
                for_row_block_pairs(&mut means.data, &mut states.data, nv, |r, m, s| {
                    elementwise::bernoulli_rows(m, b, beta, &key, (r * nv) as u32, Some(s))
                })
            }
            VisibleUnits::Gaussian => {
                let sigma = &params
                    .sigma
                    .as_ref()
                    .ok_or_else(|| EngineError::Internal("Gaussian RBM without sigma".into()))?
                    .data;
                let noise_scale = 1.0 / beta.sqrt();
                for_row_block_pairs(&mut means.data, &mut states.data, nv, |first, m, s| {
                    let rows = m.chunks_mut(nv.max(1)).zip(s.chunks_mut(nv.max(1)));
                    for (r, (m_row, s_row)) in rows.enumerate() {
                        let base = ((first + r) * nv) as u32;
                        for i in 0..nv {
                            let mean = b[i] + sigma[i] * m_row[i];
                            m_row[i] = mean;
                            s_row[i] = mean + sigma[i] * noise_scale * key.normal(base + i as u32);
                        }
                    }
                })
            }
        }
        Ok(())
    }

    fn gradient(
        &self,
        params: &RbmTensors<CpuMatrix>,
        pos_v: &CpuMatrix,
        pos_h: &CpuMatrix,
        neg_v: &CpuMatrix,
        neg_h: &CpuMatrix,
        offsets: Option<Offsets<'_, CpuMatrix>>,
        grad: &mut RbmGradient<CpuMatrix>,
    ) -> Result<()> {
        let (nv, nh) = (params.w.rows, params.w.cols);
        check_gradient_shapes(params, pos_v, pos_h, neg_v, neg_h)?;
        check_shape("W gradient", &grad.w, nv, nh)?;
        let (np, nn) = (pos_v.rows as f32, neg_v.rows as f32);
        let pos_x = self.scaled_visible(params, pos_v);
        let neg_x = self.scaled_visible(params, neg_v);
        // <x h^T>_data - <x h^T>_model
        let by_lookup = self.weight_products_by_lookup(
            &mut grad.w,
            params.units,
            [(pos_v, pos_h, 1.0 / np), (neg_v, neg_h, -1.0 / nn)],
            false,
        );
        if !by_lookup {
            matmul(
                &mut grad.w.data,
                pos_x.view().t(),
                pos_h.view(),
                1.0 / np,
                false,
            );
            matmul(
                &mut grad.w.data,
                neg_x.view().t(),
                neg_h.view(),
                -1.0 / nn,
                true,
            );
        }
        let (dx, dh) = mean_differences(&pos_x, &neg_x, pos_h, neg_h);
        bias_gradients(params, &dx, &dh, grad)?;
        if let Some(Offsets { mu, lambda }) = offsets {
            // Centered gradient mapped to plain parameters (see `Offsets`):
            // gW = dW - mu dh^T - dx lambda^T; gb = dx - gW lambda; gc = dh - gW^T mu.
            let (mu, lambda) = (&mu.data, &lambda.data);
            grad.w
                .data
                .par_chunks_mut(nh)
                .enumerate()
                .for_each(|(i, row)| {
                    for j in 0..nh {
                        row[j] -= (mu[i] as f64 * dh[j] + dx[i] * lambda[j] as f64) as f32;
                    }
                });
            for i in 0..nv {
                let row = &grad.w.data[i * nh..(i + 1) * nh];
                let wl: f64 = row
                    .iter()
                    .zip(lambda)
                    .map(|(w, l)| *w as f64 * *l as f64)
                    .sum();
                grad.b.data[i] = (dx[i] - wl) as f32;
            }
            let mut wtmu = vec![0.0f64; nh];
            for i in 0..nv {
                let row = &grad.w.data[i * nh..(i + 1) * nh];
                for (acc, w) in wtmu.iter_mut().zip(row) {
                    *acc += *w as f64 * mu[i] as f64;
                }
            }
            for j in 0..nh {
                grad.c.data[j] = (dh[j] - wtmu[j]) as f32;
            }
        }
        if let Some(g_sigma) = grad.log_sigma.as_mut() {
            // -dE/dlog(sigma_i) = (v_i - b_i)^2 / sigma_i^2 - x_i (W h)_i, data minus model.
            let sigma = &params
                .sigma
                .as_ref()
                .ok_or_else(|| EngineError::Internal("no sigma".into()))?
                .data;
            let stat = |v: &CpuMatrix, x: &CpuMatrix, h: &CpuMatrix| -> Vec<f64> {
                let mut wh = CpuMatrix::zeros(v.rows, nv);
                matmul(&mut wh.data, h.view(), params.w.view().t(), 1.0, false);
                let mut acc = vec![0.0f64; nv];
                for r in 0..v.rows {
                    for i in 0..nv {
                        let k = r * nv + i;
                        let z = (v.data[k] - params.b.data[i]) / sigma[i];
                        acc[i] += (z * z - x.data[k] * wh.data[k]) as f64;
                    }
                }
                acc.iter().map(|a| a / v.rows.max(1) as f64).collect()
            };
            let sp = stat(pos_v, &pos_x, pos_h);
            let sn = stat(neg_v, &neg_x, neg_h);
            for i in 0..nv {
                g_sigma.data[i] = (sp[i] - sn[i]) as f32;
            }
        }
        Ok(())
    }

    /// The gradient's products added straight into W, each scaled by the rate over its
    /// rows (learned sigma keeps the two-step form).
    fn gradient_with_weight_step(
        &self,
        params: &mut RbmTensors<CpuMatrix>,
        pos_v: &CpuMatrix,
        pos_h: &CpuMatrix,
        neg_v: &CpuMatrix,
        neg_h: &CpuMatrix,
        weight_rate: f32,
        grad: &mut RbmGradient<CpuMatrix>,
    ) -> Result<bool> {
        if grad.log_sigma.is_some() {
            return Ok(false);
        }
        check_gradient_shapes(params, pos_v, pos_h, neg_v, neg_h)?;
        let (np, nn) = (pos_v.rows as f32, neg_v.rows as f32);
        let pos_x = self.scaled_visible(params, pos_v);
        let neg_x = self.scaled_visible(params, neg_v);
        let (nv, nh) = (params.w.rows, params.w.cols);
        if self.weight_products_by_lookup(
            &mut params.w,
            params.units,
            [
                (pos_v, pos_h, weight_rate / np),
                (neg_v, neg_h, -weight_rate / nn),
            ],
            true,
        ) {
            let (dx, dh) = mean_differences(&pos_x, &neg_x, pos_h, neg_h);
            bias_gradients(params, &dx, &dh, grad)?;
            return Ok(true);
        }
        let terms = [
            (pos_x.view().t(), pos_h.view(), weight_rate / np),
            (neg_x.view().t(), neg_h.view(), -weight_rate / nn),
        ];
        // Over the team by rows of W, each member then takes the means of the visible
        // columns of its rows and of a matching share of the hidden columns, which its
        // products have just read (as a separate step, 55 of a 1450 us 784 x 500 batch-100
        // update, most of it reading rows other cores wrote).
        let pieces = gemm::add_products_by_rows(&mut params.w.data, &terms, &|(r0, r1)| {
            let hidden = (r0 * nh / nv, r1 * nh / nv);
            let difference = |pos, neg, range| {
                differences(
                    &column_means_range(pos, range),
                    &column_means_range(neg, range),
                )
            };
            let dx = difference(&pos_x, &neg_x, (r0, r1));
            (r0, dx, hidden.0, difference(pos_h, neg_h, hidden))
        });
        let (dx, dh) = match pieces {
            Some(pieces) => {
                let (mut dx, mut dh) = (vec![0.0f64; nv], vec![0.0f64; nh]);
                for (x0, x, h0, h) in pieces {
                    dx[x0..x0 + x.len()].copy_from_slice(&x);
                    dh[h0..h0 + h.len()].copy_from_slice(&h);
                }
                (dx, dh)
            }
            None => {
                for (a, b, scale) in terms {
                    matmul(&mut params.w.data, a, b, scale, true);
                }
                mean_differences(&pos_x, &neg_x, pos_h, neg_h)
            }
        };
        bias_gradients(params, &dx, &dh, grad)?;
        Ok(true)
    }

    fn apply_update(
        &self,
        param: &mut CpuMatrix,
        grad: &CpuMatrix,
        state: &mut [CpuMatrix],
        rule: &UpdateRule,
        decay: bool,
    ) -> Result<()> {
        check_shape("gradient", grad, param.rows, param.cols)?;
        let (l1, l2) = if decay {
            (rule.l1, rule.l2)
        } else {
            (0.0, 0.0)
        };
        let lr = rule.learning_rate;
        // the L1/L2 terms of a step (a no-op for the biases and when both are 0)
        let decayed = move |g: f32, p: f32| g - l2 * p - l1 * p.signum() * (p != 0.0) as u8 as f32;
        match rule.optimizer {
            OptimizerRule::Sgd { momentum } => {
                let [velocity] = state else {
                    return Err(EngineError::Internal("sgd needs one state tensor".into()));
                };
                check_shape("velocity", velocity, param.rows, param.cols)?;
                // (the loops below capture their constants by value and walk the slices
                // with iterators: with indexing and captured references they compiled to
                // scalar code, bounds checks and reloads in every iteration)
                if momentum == 0.0 {
                    // The velocity would only ever be multiplied by 0: leave it (at zero)
                    // and save its memory traffic, a quarter of a 784 x 500 batch-10 update.
                    zip_update(
                        &mut param.data,
                        &grad.data,
                        [],
                        #[inline(always)]
                        move |p, g, []| {
                            for (p, &g) in p.iter_mut().zip(g) {
                                *p += lr * decayed(g, *p);
                            }
                        },
                    );
                } else {
                    zip_update(
                        &mut param.data,
                        &grad.data,
                        [&mut velocity.data],
                        #[inline(always)]
                        move |p, g, [v]| {
                            for ((p, &g), v) in p.iter_mut().zip(g).zip(v.iter_mut()) {
                                *v = momentum * *v + lr * decayed(g, *p);
                                *p += *v;
                            }
                        },
                    );
                }
            }
            OptimizerRule::Adam {
                beta1,
                beta2,
                eps,
                t,
            } => {
                let [m1, m2] = state else {
                    return Err(EngineError::Internal("adam needs two state tensors".into()));
                };
                check_shape("adam moment", m1, param.rows, param.cols)?;
                check_shape("adam moment", m2, param.rows, param.cols)?;
                let t = t.max(1) as i32;
                let c1 = 1.0 / (1.0 - beta1.powi(t));
                let c2 = 1.0 / (1.0 - beta2.powi(t));
                let states = [&mut m1.data, &mut m2.data];
                zip_update(
                    &mut param.data,
                    &grad.data,
                    states,
                    #[inline(always)]
                    move |p, g, [a, b]| {
                        let moments = a.iter_mut().zip(b.iter_mut());
                        for ((p, &g), (a, b)) in p.iter_mut().zip(g).zip(moments) {
                            let step = decayed(g, *p);
                            *a = beta1 * *a + (1.0 - beta1) * step;
                            *b = beta2 * *b + (1.0 - beta2) * step * step;
                            *p += lr * (*a * c1) / ((*b * c2).sqrt() + eps);
                        }
                    },
                );
            }
        }
        Ok(())
    }

    fn update_offsets(&self, offset: &mut CpuMatrix, x: &CpuMatrix, rate: f32) -> Result<()> {
        check_shape("offset", offset, 1, x.cols)?;
        for (o, m) in offset.data.iter_mut().zip(column_means(x)) {
            *o = (1.0 - rate) * *o + rate * m as f32;
        }
        Ok(())
    }

    fn energies(
        &self,
        params: &RbmTensors<CpuMatrix>,
        visible: &CpuMatrix,
        hidden: &CpuMatrix,
    ) -> Result<Vec<f32>> {
        let (n, nv, nh) = (visible.rows, params.w.rows, params.w.cols);
        check_shape("visible", visible, n, nv)?;
        check_shape("hidden", hidden, n, nh)?;
        let x = self.scaled_visible(params, visible);
        let mut xw = CpuMatrix::zeros(n, nh);
        matmul(&mut xw.data, x.view(), params.w.view(), 1.0, false);
        let (b, c) = (&params.b.data, &params.c.data);
        let out = (0..n)
            .into_par_iter()
            .map(|r| {
                let v = &visible.data[r * nv..(r + 1) * nv];
                let h = &hidden.data[r * nh..(r + 1) * nh];
                let xw_r = &xw.data[r * nh..(r + 1) * nh];
                let mut e = 0.0f64;
                for j in 0..nh {
                    e -= (h[j] * (c[j] + xw_r[j])) as f64;
                }
                match (&params.units, &params.sigma) {
                    (VisibleUnits::Gaussian, Some(sigma)) => {
                        for i in 0..nv {
                            let z = (v[i] - b[i]) / sigma.data[i];
                            e += 0.5 * (z * z) as f64;
                        }
                    }
                    _ => {
                        for i in 0..nv {
                            e -= (v[i] * b[i]) as f64;
                        }
                    }
                }
                e as f32
            })
            .collect();
        Ok(out)
    }

    fn all_finite(&self, m: &CpuMatrix) -> Result<bool> {
        Ok(m.data.iter().all(|x| x.is_finite()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(rows: usize, cols: usize) -> CpuMatrix {
        let key = RngKey::new(9, 4, 0);
        CpuMatrix {
            rows,
            cols,
            data: (0..rows * cols)
                .map(|i| key.uniform(i as u32) * 3.0 - 1.0)
                .collect(),
        }
    }

    /// Gathered rows are the source rows, in the order asked (over the team for a large
    /// batch); a row past the end is an error.
    #[test]
    fn gathered_rows_are_the_rows_asked_for() {
        let be = CpuBackend::new();
        let src = values(300, 90);
        let rows: Vec<u32> = (0..200).map(|i| (i * 37 % 300) as u32).collect();
        let mut dst = CpuMatrix::zeros(rows.len(), 90);
        be.gather_rows(&src, &rows, &mut dst).unwrap();
        for (k, &r) in rows.iter().enumerate() {
            let r = r as usize;
            assert_eq!(
                dst.data[k * 90..(k + 1) * 90],
                src.data[r * 90..(r + 1) * 90]
            );
        }
        assert!(be
            .gather_rows(&src, &[1, 300], &mut CpuMatrix::zeros(2, 90))
            .is_err());
    }

    /// Column means in blocks of rows (over the team for large matrices) against plain
    /// f64 sums: each order's mean of n values of magnitude <= 2 is within n u 2 of the
    /// exact mean (u = 2^-53; 2.2e-13 for n = 1000), so the two agree within 4.5e-13; the
    /// mean of no rows is 0. Several matrices at once give each one's means.
    #[test]
    fn column_means_match_plain_sums() {
        for (rows, cols) in [(1000, 77), (100, 784), (31, 5), (0, 4)] {
            let m = values(rows, cols);
            let got = column_means(&m);
            for (c, g) in got.iter().enumerate() {
                let sum: f64 = (0..rows).map(|r| m.data[r * cols + c] as f64).sum();
                let want = sum / rows.max(1) as f64;
                assert!(
                    (g - want).abs() < 4.5e-13,
                    "{rows}x{cols} column {c}: {g} vs {want}"
                );
            }
        }
        // several matrices in one step: each one's means as alone, to the bit; and the
        // team's blocks (a large matrix) give what one thread's pass gives, to the bit
        let (a, b, c) = (values(100, 784), values(7, 3), values(100, 500));
        assert_eq!(column_means(&a), column_means_range(&a, (0, 784)));
        let [ma, mb, mc] = column_means_of([&a, &b, &c]);
        assert_eq!(
            (ma, mb, mc),
            (column_means(&a), column_means(&b), column_means(&c))
        );
    }
}
