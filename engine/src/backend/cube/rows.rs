//! Data movement on the device: copies, minibatch gathers out of a resident data set,
//! masked row swaps (tempering), and elementwise combinations of short vectors.

use cubecl::prelude::*;

use super::device::{cube_dim, cubes_for, linear_pos, DeviceArray};

/// dst = src (same length).
#[cube(launch)]
pub fn copy_kernel(src: &Array<f32>, dst: &mut Array<f32>, len: u32) {
    let i = linear_pos();
    if i < len {
        dst[i as usize] = src[i as usize];
    }
}

/// dst[r, :] = src[rows[r], :].
#[cube(launch)]
pub fn gather_rows_kernel(
    src: &Array<f32>,
    rows: &Array<u32>,
    dst: &mut Array<f32>,
    len: u32,
    width: u32,
) {
    let i = linear_pos();
    if i < len {
        let r = i / width;
        let col = i % width;
        dst[i as usize] = src[(rows[r as usize] * width + col) as usize];
    }
}

/// Swaps a[r, :] and b[r, :] where mask[r] != 0.
#[cube(launch)]
pub fn swap_rows_kernel(
    a: &mut Array<f32>,
    b: &mut Array<f32>,
    mask: &Array<u32>,
    len: u32,
    width: u32,
) {
    let i = linear_pos();
    if i < len && mask[(i / width) as usize] != 0 {
        let x = a[i as usize];
        a[i as usize] = b[i as usize];
        b[i as usize] = x;
    }
}

/// out = x / y elementwise (short vectors, e.g. bias gradient over sigma).
#[cube(launch)]
pub fn divide_kernel(x: &Array<f32>, y: &Array<f32>, out: &mut Array<f32>, len: u32) {
    let i = linear_pos();
    if i < len {
        out[i as usize] = x[i as usize] / y[i as usize];
    }
}

pub fn copy<R: Runtime>(client: &ComputeClient<R>, src: &DeviceArray<f32>, dst: &DeviceArray<f32>) {
    copy_kernel::launch::<R>(
        client,
        cubes_for(src.len),
        cube_dim(),
        src.arg(),
        dst.arg(),
        src.len as u32,
    );
}

pub fn gather_rows<R: Runtime>(
    client: &ComputeClient<R>,
    src: &DeviceArray<f32>,
    rows: &DeviceArray<u32>,
    dst: &DeviceArray<f32>,
    width: usize,
) {
    gather_rows_kernel::launch::<R>(
        client,
        cubes_for(dst.len),
        cube_dim(),
        src.arg(),
        rows.arg(),
        dst.arg(),
        dst.len as u32,
        width as u32,
    );
}

pub fn swap_rows<R: Runtime>(
    client: &ComputeClient<R>,
    a: &DeviceArray<f32>,
    b: &DeviceArray<f32>,
    mask: &DeviceArray<u32>,
    width: usize,
) {
    swap_rows_kernel::launch::<R>(
        client,
        cubes_for(a.len),
        cube_dim(),
        a.arg(),
        b.arg(),
        mask.arg(),
        a.len as u32,
        width as u32,
    );
}

pub fn divide<R: Runtime>(
    client: &ComputeClient<R>,
    x: &DeviceArray<f32>,
    y: &DeviceArray<f32>,
    out: &DeviceArray<f32>,
) {
    divide_kernel::launch::<R>(
        client,
        cubes_for(x.len),
        cube_dim(),
        x.arg(),
        y.arg(),
        out.arg(),
        x.len as u32,
    );
}
