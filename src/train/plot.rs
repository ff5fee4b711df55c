//! A loss-curve PNG: one line per series, logarithmic y axis with a tick per power of ten, step
//! numbers on the x axis. Drawn directly into pixels (a tiny digit font included) so training needs
//! no plotting library.

use std::path::Path;

use image::{Rgb, RgbImage};

use crate::error::{Error, Result};

const W: u32 = 960;
const H: u32 = 480;
const LEFT: u32 = 70;
const BOTTOM: u32 = 40;
const TOP: u32 = 20;
const RIGHT: u32 = 20;

const COLOURS: [[u8; 3]; 6] = [
    [31, 119, 180],
    [214, 39, 40],
    [44, 160, 44],
    [148, 103, 189],
    [255, 127, 14],
    [23, 190, 207],
];

/// 3×5 glyphs for the characters tick labels need.
fn glyph(c: char) -> Option<[u8; 5]> {
    Some(match c {
        '0' => [0b111, 0b101, 0b101, 0b101, 0b111],
        '1' => [0b010, 0b110, 0b010, 0b010, 0b111],
        '2' => [0b111, 0b001, 0b111, 0b100, 0b111],
        '3' => [0b111, 0b001, 0b111, 0b001, 0b111],
        '4' => [0b101, 0b101, 0b111, 0b001, 0b001],
        '5' => [0b111, 0b100, 0b111, 0b001, 0b111],
        '6' => [0b111, 0b100, 0b111, 0b101, 0b111],
        '7' => [0b111, 0b001, 0b010, 0b010, 0b010],
        '8' => [0b111, 0b101, 0b111, 0b101, 0b111],
        '9' => [0b111, 0b101, 0b111, 0b001, 0b111],
        'e' => [0b000, 0b111, 0b111, 0b100, 0b111],
        '-' => [0b000, 0b000, 0b111, 0b000, 0b000],
        'k' => [0b100, 0b101, 0b110, 0b101, 0b101],
        _ => return None,
    })
}

fn text(img: &mut RgbImage, x: u32, y: u32, s: &str, colour: [u8; 3]) {
    let scale = 2;
    for (i, c) in s.chars().enumerate() {
        let Some(rows) = glyph(c) else { continue };
        for (r, bits) in rows.iter().enumerate() {
            for col in 0..3 {
                if bits & (0b100 >> col) != 0 {
                    for dy in 0..scale {
                        for dx in 0..scale {
                            let px = x + (i as u32 * 4 + col) * scale + dx;
                            let py = y + r as u32 * scale + dy;
                            if px < W && py < H {
                                img.put_pixel(px, py, Rgb(colour));
                            }
                        }
                    }
                }
            }
        }
    }
}

fn line(img: &mut RgbImage, (x0, y0): (f32, f32), (x1, y1): (f32, f32), colour: [u8; 3]) {
    let steps = (x1 - x0).abs().max((y1 - y0).abs()).ceil().max(1.0) as usize;
    for i in 0..=steps {
        let t = i as f32 / steps as f32;
        let (x, y) = (x0 + (x1 - x0) * t, y0 + (y1 - y0) * t);
        if x >= 0.0 && y >= 0.0 && (x as u32) < W && (y as u32) < H {
            img.put_pixel(x as u32, y as u32, Rgb(colour));
        }
    }
}

/// Draws `series` (name, points `(step, value)`) with a log-scale y axis and saves a PNG
/// atomically. Non-positive and non-finite values are skipped.
pub fn save_loss_plot(path: &Path, series: &[(String, Vec<(f64, f64)>)]) -> Result<()> {
    let mut img = RgbImage::from_pixel(W, H, Rgb([255, 255, 255]));
    let points = || {
        series
            .iter()
            .flat_map(|(_, p)| p.iter())
            .filter(|(_, y)| y.is_finite() && *y > 0.0)
    };
    let (mut x_max, mut y_lo, mut y_hi) = (1.0f64, f64::INFINITY, f64::NEG_INFINITY);
    for &(x, y) in points() {
        x_max = x_max.max(x);
        y_lo = y_lo.min(y.log10());
        y_hi = y_hi.max(y.log10());
    }
    if !y_lo.is_finite() {
        (y_lo, y_hi) = (-1.0, 0.0);
    }
    let (y_lo, y_hi) = (y_lo.floor(), y_hi.ceil().max(y_lo.floor() + 1.0));
    let plot_w = (W - LEFT - RIGHT) as f64;
    let plot_h = (H - TOP - BOTTOM) as f64;
    let to_px = |x: f64, y: f64| -> (f32, f32) {
        (
            (LEFT as f64 + x / x_max * plot_w) as f32,
            (TOP as f64 + (y_hi - y.log10()) / (y_hi - y_lo) * plot_h) as f32,
        )
    };
    let grey = [200, 200, 200];
    let black = [0, 0, 0];
    // Gridlines and labels at powers of ten.
    let mut e = y_lo as i32;
    while e as f64 <= y_hi {
        let (_, y) = to_px(1.0, 10f64.powi(e));
        line(&mut img, (LEFT as f32, y), ((W - RIGHT) as f32, y), grey);
        text(
            &mut img,
            8,
            (y as u32).saturating_sub(5),
            &format!("1e{e}"),
            black,
        );
        e += 1;
    }
    for i in 0..=4 {
        let x = x_max * i as f64 / 4.0;
        let (px, _) = to_px(x, 10f64.powf(y_lo));
        line(&mut img, (px, TOP as f32), (px, (H - BOTTOM) as f32), grey);
        let label = if x_max >= 10_000.0 {
            format!("{}k", (x / 1000.0).round() as u64)
        } else {
            format!("{}", x.round() as u64)
        };
        text(
            &mut img,
            (px as u32).saturating_sub(8),
            H - BOTTOM + 8,
            &label,
            black,
        );
    }
    line(
        &mut img,
        (LEFT as f32, TOP as f32),
        (LEFT as f32, (H - BOTTOM) as f32),
        black,
    );
    line(
        &mut img,
        (LEFT as f32, (H - BOTTOM) as f32),
        ((W - RIGHT) as f32, (H - BOTTOM) as f32),
        black,
    );
    for (i, (_, pts)) in series.iter().enumerate() {
        let colour = COLOURS[i % COLOURS.len()];
        let mut prev: Option<(f32, f32)> = None;
        for &(x, y) in pts.iter().filter(|(_, y)| y.is_finite() && *y > 0.0) {
            let p = to_px(x, y);
            if let Some(q) = prev {
                line(&mut img, q, p, colour);
            }
            prev = Some(p);
        }
        // A colour key in the top-right corner, one swatch per series in order.
        let y = TOP + 6 + i as u32 * 12;
        for dx in 0..24 {
            for dy in 0..4 {
                img.put_pixel(W - RIGHT - 30 + dx, y + dy, Rgb(colour));
            }
        }
    }
    let tmp = path.with_extension("png.partial");
    img.save_with_format(&tmp, image::ImageFormat::Png)
        .map_err(|e| Error::bad_file(&tmp, e.to_string()))?;
    std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))
}
