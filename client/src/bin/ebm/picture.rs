//! PNG pictures of job results (`--png PATH`): a grid of samples for image-shaped data, and a
//! bar chart of an `observe` histogram with the mode, mean and `map_statistic` marked. Each
//! drawing also describes its geometry as JSON, so scripts (and the tests) can find things
//! in the picture.
use anyhow::{bail, Context};
use ebm_client::npy::Matrix;
use ebm_client::v1::Histogram;
use serde_json::{json, Value};
use std::path::Path;

/// At most this many pixels on a side.
const MAX_SIDE: usize = 16_384;
/// Default number of samples in a grid.
pub const DEFAULT_SAMPLES: usize = 100;
pub const MAX_SAMPLES: usize = 10_000;

/// Pixels between tiles, and their colour (blue-grey, distinct from black and white).
const GAP: usize = 2;
const GAP_RGB: [u8; 3] = [64, 96, 160];
/// Histogram chart size and plot area (left, top, right, bottom; exclusive right/bottom).
const CHART_W: usize = 800;
const CHART_H: usize = 400;
const PLOT: [usize; 4] = [40, 20, 760, 370];
const BAR_RGB: [u8; 3] = [150, 150, 150];
const AXIS_RGB: [u8; 3] = [0, 0, 0];
pub const MODE_RGB: [u8; 3] = [220, 30, 30];
pub const MEAN_RGB: [u8; 3] = [30, 60, 220];
pub const MAP_RGB: [u8; 3] = [20, 160, 60];

/// An RGB image, row-major, 3 bytes per pixel.
pub struct Image {
    pub width: usize,
    pub height: usize,
    pub rgb: Vec<u8>,
}

impl Image {
    fn new(width: usize, height: usize, fill: [u8; 3]) -> Image {
        let mut rgb = Vec::with_capacity(width * height * 3);
        for _ in 0..width * height {
            rgb.extend_from_slice(&fill);
        }
        Image { width, height, rgb }
    }

    fn put(&mut self, x: usize, y: usize, c: [u8; 3]) {
        if x < self.width && y < self.height {
            let i = (y * self.width + x) * 3;
            self.rgb[i..i + 3].copy_from_slice(&c);
        }
    }

    fn fill(&mut self, x0: usize, y0: usize, x1: usize, y1: usize, c: [u8; 3]) {
        for y in y0..y1.min(self.height) {
            for x in x0..x1.min(self.width) {
                self.put(x, y, c);
            }
        }
    }

    /// Writes an 8-bit RGB PNG.
    pub fn write(&self, path: &Path) -> anyhow::Result<()> {
        let file = std::fs::File::create(path)
            .with_context(|| format!("cannot write {}", path.display()))?;
        let mut encoder = png::Encoder::new(
            std::io::BufWriter::new(file),
            self.width as u32,
            self.height as u32,
        );
        encoder.set_color(png::ColorType::Rgb);
        encoder.set_depth(png::BitDepth::Eight);
        let mut writer = encoder
            .write_header()
            .with_context(|| format!("writing {}", path.display()))?;
        writer
            .write_image_data(&self.rgb)
            .with_context(|| format!("writing {}", path.display()))?;
        writer
            .finish()
            .with_context(|| format!("writing {}", path.display()))?;
        Ok(())
    }
}

/// Parses `--shape HxW` (also `H,W`).
pub fn parse_shape(text: &str) -> Result<(usize, usize), String> {
    let parts: Vec<&str> = text.split(['x', 'X', ',']).collect();
    let bad = || format!("--shape must be HxW with positive integers, e.g. 28x28, got {text:?}");
    if parts.len() != 2 {
        return Err(bad());
    }
    let h: usize = parts[0].trim().parse().map_err(|_| bad())?;
    let w: usize = parts[1].trim().parse().map_err(|_| bad())?;
    if h == 0 || w == 0 {
        return Err(bad());
    }
    Ok((h, w))
}

/// How each sample is drawn: an H x W image, or (when the units do not form one) a strip of
/// one pixel row per sample.
fn layout(
    cols: usize,
    shape: Option<(usize, usize)>,
    width_hint: Option<usize>,
) -> anyhow::Result<((usize, usize), bool)> {
    if let Some((h, w)) = shape {
        if h * w != cols {
            bail!("--shape {h}x{w} has {} pixels but each sample has {cols} units: give H x W = {cols}", h * w);
        }
        return Ok(((h, w), false));
    }
    if let Some(w) = width_hint.filter(|&w| w > 0 && cols.is_multiple_of(w)) {
        return Ok(((cols / w, w), false));
    }
    let side = (cols as f64).sqrt().round() as usize;
    if side * side == cols {
        return Ok(((side, side), false));
    }
    Ok(((1, cols), true))
}

/// Grey level of each value: 0/1 units and -1/+1 spins map to black/white; anything else is
/// scaled from the smallest (black) to the largest (white) value drawn.
fn grey_scale(values: &[f32]) -> (f32, f32) {
    if values.iter().all(|&v| v == 0.0 || v == 1.0) {
        return (0.0, 1.0);
    }
    if values.iter().all(|&v| v == -1.0 || v == 1.0) {
        return (-1.0, 1.0);
    }
    let lo = values.iter().copied().fold(f32::INFINITY, f32::min);
    let hi = values.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    (lo, hi)
}

/// The first `max` samples (rows) as a grid of tiles.
pub fn sample_grid(
    samples: &Matrix,
    shape: Option<(usize, usize)>,
    width_hint: Option<usize>,
    max: usize,
) -> anyhow::Result<(Image, Value)> {
    if samples.rows == 0 || samples.cols == 0 {
        bail!("there are no samples to draw");
    }
    if !samples.values.iter().all(|v| v.is_finite()) {
        bail!("the samples contain non-finite values; cannot draw them");
    }
    let ((h, w), strip) = layout(samples.cols, shape, width_hint)?;
    let n = samples.rows.min(max.max(1));
    let values = &samples.values[..n * samples.cols];
    let per_row = if strip {
        1
    } else {
        (n as f64).sqrt().ceil() as usize
    };
    let tile_rows = n.div_ceil(per_row);
    let scale = (64 / h.max(w)).max(1);
    let width = per_row * (w * scale + GAP) + GAP;
    let height = tile_rows * (h * scale + GAP) + GAP;
    if width > MAX_SIDE || height > MAX_SIDE {
        bail!(
            "the picture would be {width} x {height} pixels (at most {MAX_SIDE} per side): \
             draw fewer samples (--png-samples) or give --shape HxW"
        );
    }
    let (lo, hi) = grey_scale(values);
    let grey = |v: f32| -> u8 {
        if hi > lo {
            (((v - lo) / (hi - lo)).clamp(0.0, 1.0) * 255.0).round() as u8
        } else {
            128
        }
    };
    let mut img = Image::new(width, height, GAP_RGB);
    for k in 0..n {
        let row = &values[k * samples.cols..(k + 1) * samples.cols];
        let x0 = GAP + (k % per_row) * (w * scale + GAP);
        let y0 = GAP + (k / per_row) * (h * scale + GAP);
        for i in 0..h {
            for j in 0..w {
                let g = grey(row[i * w + j]);
                img.fill(
                    x0 + j * scale,
                    y0 + i * scale,
                    x0 + (j + 1) * scale,
                    y0 + (i + 1) * scale,
                    [g, g, g],
                );
            }
        }
    }
    let info = json!({
        "kind": "samples",
        "width": width,
        "height": height,
        "samples": n,
        "shape": [h, w],
        "strip": strip,
        "scale": scale,
        "gap": GAP,
        "tiles_per_row": per_row,
        "black": lo,
        "white": hi,
    });
    Ok((img, info))
}

/// Bar chart of a histogram with vertical lines at the mode (red), mean (blue) and
/// map_statistic (green).
pub fn histogram_chart(
    histogram: &Histogram,
    mode: Option<f64>,
    mean: Option<f64>,
    map_statistic: Option<f64>,
) -> anyhow::Result<(Image, Value)> {
    let (edges, counts) = (&histogram.edges, &histogram.counts);
    if counts.is_empty() || edges.len() != counts.len() + 1 {
        bail!("the job's histogram is empty or malformed; nothing to draw");
    }
    let markers: Vec<f64> = [mode, mean, map_statistic]
        .into_iter()
        .flatten()
        .filter(|v| v.is_finite())
        .collect();
    let mut lo = edges[0];
    let mut hi = edges[edges.len() - 1];
    for &m in &markers {
        lo = lo.min(m);
        hi = hi.max(m);
    }
    if !(lo.is_finite() && hi.is_finite()) {
        bail!("the histogram edges are not finite; nothing to draw");
    }
    let pad = if hi > lo { 0.02 * (hi - lo) } else { 0.5 };
    let (lo, hi) = (lo - pad, hi + pad);
    let [left, top, right, bottom] = PLOT;
    let x_of = |v: f64| -> usize {
        let t = ((v - lo) / (hi - lo)).clamp(0.0, 1.0);
        left + (t * (right - left - 1) as f64).round() as usize
    };
    let max_count = counts.iter().copied().max().unwrap_or(0).max(1);
    let mut img = Image::new(CHART_W, CHART_H, [255, 255, 255]);
    for (k, &c) in counts.iter().enumerate() {
        let (x0, x1) = (x_of(edges[k]), x_of(edges[k + 1]));
        // a one-pixel gap between bars when they are wide enough to spare it
        let x1 = if x1 > x0 + 3 { x1 - 1 } else { x1.max(x0 + 1) };
        let bar = ((c as f64 / max_count as f64) * (bottom - top) as f64).round() as usize;
        img.fill(x0, bottom - bar, x1, bottom, BAR_RGB);
    }
    img.fill(left, bottom, right, bottom + 1, AXIS_RGB);
    img.fill(left - 1, top, left, bottom + 1, AXIS_RGB);
    let mut marked = serde_json::Map::new();
    for (name, value, colour) in [
        ("map_statistic", map_statistic, MAP_RGB),
        ("mean", mean, MEAN_RGB),
        ("mode", mode, MODE_RGB),
    ] {
        if let Some(v) = value.filter(|v| v.is_finite()) {
            let x = x_of(v);
            img.fill(x, top, x + 2, bottom, colour);
            marked.insert(
                name.into(),
                json!({"value": v, "x": x, "colour": format!("#{:02x}{:02x}{:02x}", colour[0], colour[1], colour[2])}),
            );
        }
    }
    let info = json!({
        "kind": "histogram",
        "width": CHART_W,
        "height": CHART_H,
        "plot": PLOT,
        "x_range": [lo, hi],
        "bins": counts.len(),
        "markers": Value::Object(marked),
    });
    Ok((img, info))
}

/// How a heat map colours its values.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum ColourScale {
    /// White (the smallest value, or 0 if all are positive) to dark blue (the largest).
    Sequential,
    /// Blue (negative) through white (0) to red (positive), symmetric about 0.
    Diverging,
}

/// Colour of `t` in [0, 1] on a white-to-dark-blue ramp.
pub fn sequential_rgb(t: f64) -> [u8; 3] {
    let t = if t.is_finite() {
        t.clamp(0.0, 1.0)
    } else {
        0.0
    };
    let mix = |from: f64, to: f64| (from + (to - from) * t).round() as u8;
    [mix(255.0, 8.0), mix(255.0, 48.0), mix(255.0, 107.0)]
}

/// Colour of `t` in [-1, 1]: blue (-1), white (0), red (+1).
pub fn diverging_rgb(t: f64) -> [u8; 3] {
    let t = if t.is_finite() {
        t.clamp(-1.0, 1.0)
    } else {
        0.0
    };
    let fade = |c: f64, s: f64| (255.0 + (c - 255.0) * s).round() as u8;
    if t >= 0.0 {
        [fade(178.0, t), fade(24.0, t), fade(43.0, t)]
    } else {
        let s = -t;
        [fade(33.0, s), fade(102.0, s), fade(172.0, s)]
    }
}

/// Mark colour of a heat map's highlighted cells (red).
pub const MARK_RGB: [u8; 3] = [220, 30, 30];

/// A `rows x cols` matrix (row-major) as a heat map, `cell` pixels per entry (chosen to give
/// about 800 pixels across when `None`), with the cells in `marks` (row, col) drawn in
/// [`MARK_RGB`]. Non-finite values are drawn grey. The description gives the geometry and
/// the value range that the colours span.
pub fn heat_map(
    rows: usize,
    cols: usize,
    values: &[f64],
    scale: ColourScale,
    marks: &[(usize, usize)],
) -> anyhow::Result<(Image, Value)> {
    if rows == 0 || cols == 0 || values.len() != rows * cols {
        bail!("nothing to draw: the matrix is empty or malformed");
    }
    let cell = (800 / rows.max(cols)).clamp(1, 32);
    let (width, height) = (cols * cell, rows * cell);
    if width > MAX_SIDE || height > MAX_SIDE {
        bail!("the picture would be {width} x {height} pixels (at most {MAX_SIDE} per side)");
    }
    let finite = values.iter().copied().filter(|v| v.is_finite());
    let lo = finite.clone().fold(f64::INFINITY, f64::min);
    let hi = finite.fold(f64::NEG_INFINITY, f64::max);
    let (lo, hi) = if lo.is_finite() { (lo, hi) } else { (0.0, 0.0) };
    let colour = |v: f64| -> [u8; 3] {
        if !v.is_finite() {
            return [128, 128, 128];
        }
        match scale {
            ColourScale::Sequential => {
                let base = lo.min(0.0);
                sequential_rgb(if hi > base {
                    (v - base) / (hi - base)
                } else {
                    0.0
                })
            }
            ColourScale::Diverging => {
                let m = lo.abs().max(hi.abs());
                diverging_rgb(if m > 0.0 { v / m } else { 0.0 })
            }
        }
    };
    let mut img = Image::new(width, height, [255, 255, 255]);
    for r in 0..rows {
        for c in 0..cols {
            let rgb = colour(values[r * cols + c]);
            img.fill(c * cell, r * cell, (c + 1) * cell, (r + 1) * cell, rgb);
        }
    }
    for &(r, c) in marks {
        if r < rows && c < cols {
            img.fill(c * cell, r * cell, (c + 1) * cell, (r + 1) * cell, MARK_RGB);
        }
    }
    let range = match scale {
        ColourScale::Sequential => [lo.min(0.0), hi],
        ColourScale::Diverging => {
            let m = lo.abs().max(hi.abs());
            [-m, m]
        }
    };
    let info = json!({
        "kind": "heat_map",
        "width": width,
        "height": height,
        "rows": rows,
        "cols": cols,
        "cell": cell,
        "colour_range": range,
        "marked": marks.len(),
    });
    Ok((img, info))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_parse_and_lay_out() {
        assert_eq!(parse_shape("28x28"), Ok((28, 28)));
        assert_eq!(parse_shape("4,16"), Ok((4, 16)));
        assert!(parse_shape("0x3").is_err() && parse_shape("abc").is_err());
        assert_eq!(layout(64, None, None).unwrap(), ((8, 8), false));
        assert_eq!(layout(64, None, Some(16)).unwrap(), ((4, 16), false));
        assert_eq!(layout(10, None, None).unwrap(), ((1, 10), true));
        assert!(layout(64, Some((5, 5)), None).is_err());
    }

    #[test]
    fn a_grid_puts_each_value_at_its_pixel() {
        let values: Vec<f32> = (0..5 * 16)
            .map(|i| ((i * 7) % 3 == 0) as u8 as f32)
            .collect();
        let m = Matrix {
            rows: 5,
            cols: 16,
            values: values.clone(),
        };
        let (img, info) = sample_grid(&m, None, None, 100).unwrap();
        assert_eq!(info["tiles_per_row"], 3);
        let scale = info["scale"].as_u64().unwrap() as usize;
        assert_eq!(scale, 16);
        assert_eq!(
            (img.width, img.height),
            (3 * (64 + 2) + 2, 2 * (64 + 2) + 2)
        );
        for k in 0..5 {
            for u in 0..16 {
                let (i, j) = (u / 4, u % 4);
                let x = 2 + (k % 3) * 66 + j * scale + scale / 2;
                let y = 2 + (k / 3) * 66 + i * scale + scale / 2;
                let p = (y * img.width + x) * 3;
                assert_eq!(img.rgb[p], (values[k * 16 + u] * 255.0) as u8);
            }
        }
    }

    #[test]
    fn a_heat_map_colours_each_cell_and_marks() {
        let values = vec![-2.0, 0.0, 1.0, 2.0, f64::NAN, -1.0];
        let (img, info) = heat_map(2, 3, &values, ColourScale::Diverging, &[(1, 2)]).unwrap();
        let cell = info["cell"].as_u64().unwrap() as usize;
        assert_eq!((img.width, img.height), (3 * cell, 2 * cell));
        let at = |r: usize, c: usize| {
            let p = ((r * cell + cell / 2) * img.width + c * cell + cell / 2) * 3;
            [img.rgb[p], img.rgb[p + 1], img.rgb[p + 2]]
        };
        assert_eq!(at(0, 0), diverging_rgb(-1.0));
        assert_eq!(at(0, 1), [255, 255, 255]);
        assert_eq!(at(1, 0), diverging_rgb(1.0));
        assert_eq!(at(1, 1), [128, 128, 128]);
        assert_eq!(at(1, 2), MARK_RGB);
        assert_eq!(sequential_rgb(0.0), [255, 255, 255]);
        assert!(heat_map(2, 2, &values, ColourScale::Sequential, &[]).is_err());
    }
}
