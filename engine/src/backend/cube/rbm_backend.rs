//! `CubeBackend<R>`: the engine's `Backend` trait (fused RBM operations) on CubeCL
//! kernels, generic over the runtime (`wgpu`, `cuda`). Matrices stay on the device; the
//! op-by-op semantics, random-number indices and f32 arithmetic follow the CPU backend,
//! which the tests hold it to.

use std::marker::PhantomData;

use cubecl::prelude::*;

use super::device::{CubeRuntime, DeviceArray};
use super::matmul::{matmul, Layout, Product};
use super::{rbm, rows};
use crate::backend::{
    Backend, BackendKind, Offsets, OptimizerRule, RbmGradient, RbmTensors, UpdateRule, VisibleUnits,
};
use crate::error::{EngineError, Result};
use crate::rng::RngKey;

/// A dense row-major f32 matrix resident on the device.
pub struct CubeMatrix {
    pub rows: usize,
    pub cols: usize,
    pub data: DeviceArray<f32>,
}

/// The CubeCL backend over runtime `R`; cheap to create (the client is shared per process).
pub struct CubeBackend<R: CubeRuntime> {
    client: ComputeClient<R>,
    _runtime: PhantomData<R>,
}

impl<R: CubeRuntime> CubeBackend<R> {
    /// Connects to the process-wide client of `R`; a clear error if there is no device.
    pub fn new() -> Result<Self> {
        Ok(CubeBackend {
            client: R::shared_client()?,
            _runtime: PhantomData,
        })
    }

    pub fn client(&self) -> &ComputeClient<R> {
        &self.client
    }

    fn temp(&self, len: usize) -> DeviceArray<f32> {
        DeviceArray::zeros(&self.client, len)
    }

    /// x = v / sigma for Gaussian units (a scaled copy), or v itself.
    fn scaled_visible(
        &self,
        params: &RbmTensors<CubeMatrix>,
        visible: &CubeMatrix,
    ) -> Result<DeviceArray<f32>> {
        match (params.units, &params.sigma) {
            (VisibleUnits::Gaussian, Some(sigma)) => {
                let x = self.temp(visible.data.len);
                rbm::divide_columns(&self.client, &visible.data, &sigma.data, &x, visible.cols);
                Ok(x)
            }
            (VisibleUnits::Gaussian, None) => Err(no_sigma()),
            _ => Ok(visible.data.clone()),
        }
    }

    fn product(
        &self,
        p: Product,
        a: &DeviceArray<f32>,
        b: &DeviceArray<f32>,
        bias: Option<&DeviceArray<f32>>,
        out: &DeviceArray<f32>,
    ) -> Result<()> {
        matmul(&self.client, p, a, b, bias, out)
    }
}

fn no_sigma() -> EngineError {
    EngineError::Internal("Gaussian RBM without sigma".into())
}

fn check_shape(what: &str, m: &CubeMatrix, rows: usize, cols: usize) -> Result<()> {
    if m.rows != rows || m.cols != cols {
        return Err(EngineError::Internal(format!(
            "{what} is {}x{}, expected {rows}x{cols}",
            m.rows, m.cols
        )));
    }
    Ok(())
}

fn product(m: usize, n: usize, k: usize, layout: Layout, alpha: f32, beta: f32) -> Product {
    Product {
        m,
        n,
        k,
        layout,
        alpha,
        beta,
    }
}

impl<R: CubeRuntime> Backend for CubeBackend<R> {
    type Matrix = CubeMatrix;

    fn kind(&self) -> BackendKind {
        R::KIND
    }

    fn upload(&self, rows: usize, cols: usize, values: &[f32]) -> Result<CubeMatrix> {
        if values.len() != rows * cols {
            return Err(EngineError::Internal(format!(
                "upload of {} values into a {rows}x{cols} matrix",
                values.len()
            )));
        }
        Ok(CubeMatrix {
            rows,
            cols,
            data: DeviceArray::upload(&self.client, values),
        })
    }

    fn download(&self, m: &CubeMatrix) -> Result<Vec<f32>> {
        m.data.download(&self.client)
    }

    fn zeros(&self, rows: usize, cols: usize) -> Result<CubeMatrix> {
        Ok(CubeMatrix {
            rows,
            cols,
            data: self.temp(rows * cols),
        })
    }

    fn shape(&self, m: &CubeMatrix) -> (usize, usize) {
        (m.rows, m.cols)
    }

    fn copy(&self, src: &CubeMatrix, dst: &mut CubeMatrix) -> Result<()> {
        check_shape("copy destination", dst, src.rows, src.cols)?;
        rows::copy(&self.client, &src.data, &dst.data);
        Ok(())
    }

    fn gather_rows(&self, src: &CubeMatrix, rows: &[u32], dst: &mut CubeMatrix) -> Result<()> {
        check_shape("gather destination", dst, rows.len(), src.cols)?;
        if let Some(&r) = rows.iter().find(|&&r| r as usize >= src.rows) {
            return Err(EngineError::Internal(format!(
                "row {r} out of {}",
                src.rows
            )));
        }
        let index = DeviceArray::upload(&self.client, rows);
        rows::gather_rows(&self.client, &src.data, &index, &dst.data, src.cols);
        Ok(())
    }

    fn swap_rows(&self, a: &mut CubeMatrix, b: &mut CubeMatrix, mask: &[bool]) -> Result<()> {
        check_shape("swap partner", b, a.rows, a.cols)?;
        let mut flags: Vec<u32> = mask.iter().take(a.rows).map(|&m| m as u32).collect();
        flags.resize(a.rows, 0);
        let flags = DeviceArray::upload(&self.client, &flags);
        rows::swap_rows(&self.client, &a.data, &b.data, &flags, a.cols);
        Ok(())
    }

    fn sample_hidden(
        &self,
        params: &RbmTensors<CubeMatrix>,
        visible: &CubeMatrix,
        beta: f32,
        key: RngKey,
        probs: &mut CubeMatrix,
        states: Option<&mut CubeMatrix>,
    ) -> Result<()> {
        let (n, nv, nh) = (visible.rows, params.w.rows, params.w.cols);
        check_shape("visible", visible, n, nv)?;
        check_shape("hidden probabilities", probs, n, nh)?;
        let x = self.scaled_visible(params, visible)?;
        let pre = self.temp(n * nh);
        let p = product(n, nh, nv, Layout::Plain, 1.0, 0.0);
        self.product(p, &x, &params.w.data, Some(&params.c.data), &pre)?;
        let draw = states.is_some();
        let scratch;
        let states = match states {
            Some(s) => {
                check_shape("hidden states", s, n, nh)?;
                &s.data
            }
            None => {
                scratch = self.temp(1);
                &scratch
            }
        };
        rbm::sample_bernoulli(
            &self.client,
            &pre,
            &pre,
            &pre,
            &probs.data,
            states,
            key,
            nh,
            beta,
            0.0,
            false,
            draw,
        );
        Ok(())
    }

    fn sample_visible(
        &self,
        params: &RbmTensors<CubeMatrix>,
        hidden: &CubeMatrix,
        beta: f32,
        key: RngKey,
        means: &mut CubeMatrix,
        states: &mut CubeMatrix,
    ) -> Result<()> {
        let (n, nv, nh) = (hidden.rows, params.w.rows, params.w.cols);
        check_shape("hidden", hidden, n, nh)?;
        check_shape("visible means", means, n, nv)?;
        check_shape("visible states", states, n, nv)?;
        let pre = self.temp(n * nv);
        let p = product(n, nv, nh, Layout::TransposedB, 1.0, 0.0);
        match params.units {
            VisibleUnits::Bernoulli => {
                self.product(p, &hidden.data, &params.w.data, Some(&params.b.data), &pre)?;
                rbm::sample_bernoulli(
                    &self.client,
                    &pre,
                    &pre,
                    &pre,
                    &means.data,
                    &states.data,
                    key,
                    nv,
                    beta,
                    0.0,
                    false,
                    true,
                );
            }
            VisibleUnits::Gaussian => {
                let sigma = &params.sigma.as_ref().ok_or_else(no_sigma)?.data;
                self.product(p, &hidden.data, &params.w.data, None, &pre)?;
                rbm::sample_gaussian(
                    &self.client,
                    &pre,
                    &params.b.data,
                    sigma,
                    sigma,
                    &means.data,
                    &states.data,
                    key,
                    nv,
                    1.0 / beta.sqrt(),
                );
            }
        }
        Ok(())
    }

    fn gradient(
        &self,
        params: &RbmTensors<CubeMatrix>,
        pos_v: &CubeMatrix,
        pos_h: &CubeMatrix,
        neg_v: &CubeMatrix,
        neg_h: &CubeMatrix,
        offsets: Option<Offsets<'_, CubeMatrix>>,
        grad: &mut RbmGradient<CubeMatrix>,
    ) -> Result<()> {
        let (nv, nh) = (params.w.rows, params.w.cols);
        check_shape("positive hidden", pos_h, pos_v.rows, nh)?;
        check_shape("negative hidden", neg_h, neg_v.rows, nh)?;
        check_shape("W gradient", &grad.w, nv, nh)?;
        let (np, nn) = (pos_v.rows, neg_v.rows);
        let pos_x = self.scaled_visible(params, pos_v)?;
        let neg_x = self.scaled_visible(params, neg_v)?;
        let c = &self.client;
        let gw = &grad.w.data;
        let stat = |k, alpha, beta| product(nv, nh, k, Layout::TransposedA, alpha, beta);
        self.product(
            stat(np, 1.0 / np as f32, 0.0),
            &pos_x,
            &pos_h.data,
            None,
            gw,
        )?;
        self.product(
            stat(nn, -1.0 / nn as f32, 1.0),
            &neg_x,
            &neg_h.data,
            None,
            gw,
        )?;
        let (dx, dh) = (self.temp(nv), self.temp(nh));
        rbm::column_sums(c, &pos_x, &dx, np, nv, 1.0 / np as f32, 0.0);
        rbm::column_sums(c, &neg_x, &dx, nn, nv, -1.0 / nn as f32, 1.0);
        rbm::column_sums(c, &pos_h.data, &dh, np, nh, 1.0 / np as f32, 0.0);
        rbm::column_sums(c, &neg_h.data, &dh, nn, nh, -1.0 / nn as f32, 1.0);
        match params.units {
            VisibleUnits::Bernoulli => rows::copy(c, &dx, &grad.b.data),
            VisibleUnits::Gaussian => {
                let sigma = &params.sigma.as_ref().ok_or_else(no_sigma)?.data;
                rows::divide(c, &dx, sigma, &grad.b.data);
            }
        }
        rows::copy(c, &dh, &grad.c.data);
        if let Some(Offsets { mu, lambda }) = offsets {
            // gW -= mu dh^T + dx lambda^T; gb = dx - gW lambda; gc = dh - gW^T mu.
            rbm::centering(c, gw, &mu.data, &dh, &dx, &lambda.data, nv, nh);
            rows::copy(c, &dx, &grad.b.data);
            let p = product(nv, 1, nh, Layout::Plain, -1.0, 1.0);
            self.product(p, gw, &lambda.data, None, &grad.b.data)?;
            let p = product(nh, 1, nv, Layout::TransposedA, -1.0, 1.0);
            self.product(p, gw, &mu.data, None, &grad.c.data)?;
        }
        if let Some(g_sigma) = grad.log_sigma.as_ref() {
            let sigma = &params.sigma.as_ref().ok_or_else(no_sigma)?.data;
            for (v, x, h, alpha, beta) in [
                (pos_v, &pos_x, pos_h, 1.0 / np as f32, 0.0),
                (neg_v, &neg_x, neg_h, -1.0 / nn as f32, 1.0),
            ] {
                let rows = v.rows;
                let wh = self.temp(rows * nv);
                let p = product(rows, nv, nh, Layout::TransposedB, 1.0, 0.0);
                self.product(p, &h.data, &params.w.data, None, &wh)?;
                let t = self.temp(rows * nv);
                rbm::sigma_statistic(c, &v.data, x, &wh, &params.b.data, sigma, &t, nv);
                rbm::column_sums(c, &t, &g_sigma.data, rows, nv, alpha, beta);
            }
        }
        Ok(())
    }

    fn apply_update(
        &self,
        param: &mut CubeMatrix,
        grad: &CubeMatrix,
        state: &mut [CubeMatrix],
        rule: &UpdateRule,
        decay: bool,
    ) -> Result<()> {
        check_shape("gradient", grad, param.rows, param.cols)?;
        let (l1, l2) = if decay {
            (rule.l1, rule.l2)
        } else {
            (0.0, 0.0)
        };
        let (optimizer, t, m1, m2) = match (rule.optimizer, &*state) {
            (OptimizerRule::Sgd { momentum }, [velocity]) => {
                (rbm::Optimizer::Sgd { momentum }, 1, velocity, None)
            }
            (
                OptimizerRule::Adam {
                    beta1,
                    beta2,
                    eps,
                    t,
                },
                [m1, m2],
            ) => (
                rbm::Optimizer::Adam {
                    beta1,
                    beta2,
                    epsilon: eps,
                },
                t,
                m1,
                Some(&m2.data),
            ),
            _ => {
                return Err(EngineError::Internal(
                    "optimizer state does not match".into(),
                ))
            }
        };
        rbm::update(
            &self.client,
            &param.data,
            &grad.data,
            &m1.data,
            m2,
            optimizer,
            rule.learning_rate,
            l2,
            l1,
            t,
        )
    }

    fn update_offsets(&self, offset: &mut CubeMatrix, x: &CubeMatrix, rate: f32) -> Result<()> {
        check_shape("offset", offset, 1, x.cols)?;
        let n = x.rows.max(1) as f32;
        rbm::column_sums(
            &self.client,
            &x.data,
            &offset.data,
            x.rows,
            x.cols,
            rate / n,
            1.0 - rate,
        );
        Ok(())
    }

    fn energies(
        &self,
        params: &RbmTensors<CubeMatrix>,
        visible: &CubeMatrix,
        hidden: &CubeMatrix,
    ) -> Result<Vec<f32>> {
        let (n, nv, nh) = (visible.rows, params.w.rows, params.w.cols);
        check_shape("visible", visible, n, nv)?;
        check_shape("hidden", hidden, n, nh)?;
        if n == 0 {
            return Ok(Vec::new());
        }
        let x = self.scaled_visible(params, visible)?;
        let pre = self.temp(n * nh);
        self.product(
            product(n, nh, nv, Layout::Plain, 1.0, 0.0),
            &x,
            &params.w.data,
            Some(&params.c.data),
            &pre,
        )?;
        let energy = self.temp(n);
        let sigma = match params.units {
            VisibleUnits::Gaussian => Some(&params.sigma.as_ref().ok_or_else(no_sigma)?.data),
            VisibleUnits::Bernoulli => None,
        };
        rbm::energies(
            &self.client,
            &pre,
            Some(&hidden.data),
            &visible.data,
            &params.b.data,
            sigma,
            &energy,
            n,
            nh,
            nv,
        );
        energy.download(&self.client)
    }

    fn all_finite(&self, m: &CubeMatrix) -> Result<bool> {
        Ok(!rbm::any_nonfinite(&self.client, &m.data)?)
    }
}
