// The reference is written as the loops of its definition, indices and all.
#![allow(clippy::needless_range_loop)]

use super::*;
use crate::nn::testutil;
use candle_core::{Device, Var};

/// A straightforward, loop-by-loop transcription of the reference algorithm (rate 2, 3x3
/// matching, 3x3 fuse, softmax scale 10, 4x4 paste), in f64.
fn naive(f: &[f64], b: &[f64], mask: &[f64], (c, hh, ww): (usize, usize, usize)) -> Vec<f64> {
    let (h, w) = (hh / 2, ww / 2);
    let l = h * w;
    let at = |v: &[f64], ch: usize, y: isize, x: isize, (sh, sw): (usize, usize)| -> f64 {
        if y < 0 || x < 0 || y as usize >= sh || x as usize >= sw {
            0.0
        } else {
            v[(ch * sh + y as usize) * sw + x as usize]
        }
    };
    // Reduced maps: pixel (2y, 2x).
    let reduce = |v: &[f64], chans: usize| -> Vec<f64> {
        let mut out = vec![0.0; chans * l];
        for ch in 0..chans {
            for y in 0..h {
                for x in 0..w {
                    out[(ch * h + y) * w + x] = v[(ch * hh + 2 * y) * ww + 2 * x];
                }
            }
        }
        out
    };
    let (fs, bs, ms) = (reduce(f, c), reduce(b, c), reduce(mask, 1));
    let yx = |p: usize| ((p / w) as isize, (p % w) as isize);
    let mut s = vec![vec![0.0; l]; l];
    for q in 0..l {
        let (qy, qx) = yx(q);
        let mut norm = 0.0;
        for ch in 0..c {
            for dy in -1..=1 {
                for dx in -1..=1 {
                    norm += at(&bs, ch, qy + dy, qx + dx, (h, w)).powi(2);
                }
            }
        }
        let norm = norm.sqrt().max(1e-4);
        for (p, row) in s.iter_mut().enumerate() {
            let (py, px) = yx(p);
            let mut dot = 0.0;
            for ch in 0..c {
                for dy in -1..=1 {
                    for dx in -1..=1 {
                        dot += at(&fs, ch, py + dy, px + dx, (h, w))
                            * at(&bs, ch, qy + dy, qx + dx, (h, w));
                    }
                }
            }
            row[q] = dot / norm;
        }
    }
    let diag = |m: &Vec<Vec<f64>>| -> Vec<Vec<f64>> {
        let mut out = vec![vec![0.0; l]; l];
        for p in 0..l {
            for q in 0..l {
                for d in -1isize..=1 {
                    let (a, b) = (p as isize + d, q as isize + d);
                    if a >= 0 && b >= 0 && (a as usize) < l && (b as usize) < l {
                        out[p][q] += m[a as usize][b as usize];
                    }
                }
            }
        }
        out
    };
    let f1 = diag(&s);
    // Column-major flattening: index x * h + y.
    let cm = |p: usize| (p % w) * h + p / w;
    let mut t = vec![vec![0.0; l]; l];
    for p in 0..l {
        for q in 0..l {
            t[cm(p)][cm(q)] = f1[p][q];
        }
    }
    let t2 = diag(&t);
    let usable: Vec<bool> = (0..l)
        .map(|q| {
            let (qy, qx) = yx(q);
            !(-1..=1).any(|dy| (-1..=1).any(|dx| at(&ms, 0, qy + dy, qx + dx, (h, w)) > 0.5))
        })
        .collect();
    let mut out = vec![0.0; c * hh * ww];
    for p in 0..l {
        let logits: Vec<f64> = (0..l)
            .map(|q| t2[cm(p)][cm(q)] * if usable[q] { 1.0 } else { 0.0 } * 10.0)
            .collect();
        let max = logits.iter().cloned().fold(f64::MIN, f64::max);
        let z: f64 = logits.iter().map(|v| (v - max).exp()).sum();
        let (py, px) = yx(p);
        for q in 0..l {
            if !usable[q] {
                continue;
            }
            let a = (logits[q] - max).exp() / z;
            let (qy, qx) = yx(q);
            for ch in 0..c {
                for ty in 0..4isize {
                    for tx in 0..4isize {
                        let (oy, ox) = (2 * py - 1 + ty, 2 * px - 1 + tx);
                        if oy < 0 || ox < 0 || oy as usize >= hh || ox as usize >= ww {
                            continue;
                        }
                        let v = at(b, ch, 2 * qy - 1 + ty, 2 * qx - 1 + tx, (hh, ww));
                        out[(ch * hh + oy as usize) * ww + ox as usize] += a * v / 4.0;
                    }
                }
            }
        }
    }
    out
}

fn flat(t: &Tensor) -> Vec<f64> {
    t.to_dtype(DType::F64)
        .and_then(|t| t.flatten_all())
        .and_then(|t| t.to_vec1())
        .expect("values")
}

/// A hole in the middle of an `hh x ww` map.
fn hole_mask(n: usize, hh: usize, ww: usize) -> Tensor {
    let mut v = vec![0f64; n * hh * ww];
    for i in 0..n {
        for y in hh / 4..hh / 2 + 1 {
            for x in ww / 4 + i..ww / 2 + 1 {
                v[(i * hh + y) * ww + x] = 1.0;
            }
        }
    }
    Tensor::from_vec(v, (n, 1, hh, ww), &Device::Cpu).expect("mask")
}

#[test]
fn forward_matches_the_naive_reference() {
    let (n, c, hh, ww) = (2, 3, 12, 10);
    let f = testutil::tensor(&[n, c, hh, ww], 1);
    let b = testutil::tensor(&[n, c, hh, ww], 2);
    let mask = hole_mask(n, hh, ww);
    let att = contextual_attention(&f, &b, &mask, AttentionConfig::default()).expect("attention");
    assert_eq!(att.output.dims(), &[n, c, hh, ww]);
    let got = flat(&att.output);
    let per = c * hh * ww;
    for i in 0..n {
        let want = naive(
            &flat(&f.get(i).expect("f"))[..],
            &flat(&b.get(i).expect("b")),
            &flat(&mask.get(i).expect("m")),
            (c, hh, ww),
        );
        for (j, (a, e)) in got[i * per..(i + 1) * per].iter().zip(&want).enumerate() {
            assert!((a - e).abs() < 1e-9, "batch {i}, element {j}: {a} vs {e}");
        }
    }
}

#[test]
fn excluded_patches_get_zero_attention() {
    let (n, c, hh, ww) = (2, 2, 16, 16);
    let f = testutil::tensor(&[n, c, hh, ww], 3);
    let b = testutil::tensor(&[n, c, hh, ww], 4);
    let mask = hole_mask(n, hh, ww);
    let att = contextual_attention(&f, &b, &mask, AttentionConfig::default()).expect("attention");
    for i in 0..n {
        let usable = &att.usable[i];
        let excluded = usable.iter().filter(|u| !**u).count();
        assert!(
            excluded > 0 && excluded < usable.len(),
            "{excluded} excluded"
        );
        let w: Vec<Vec<f64>> = att.weights[i]
            .to_dtype(DType::F64)
            .and_then(|t| t.to_vec2())
            .expect("weights");
        for row in &w {
            let mut usable_sum = 0.0;
            for (q, v) in row.iter().enumerate() {
                if usable[q] {
                    usable_sum += v;
                } else {
                    assert_eq!(*v, 0.0, "excluded patch {q} got weight");
                }
            }
            assert!(usable_sum > 0.0 && usable_sum <= 1.0 + 1e-9, "{usable_sum}");
        }
        assert!(
            att.best().expect("best")[i]
                .iter()
                .all(|&q| usable[q as usize])
        );
    }
    // The flow picture has one pixel per matching position (scaled) and colours in the hole.
    let flow = flow_image(&att, &mask, 2, 3).expect("flow");
    assert_eq!(flow[0].dimensions(), (8 * 3, 8 * 3));
    let gray = image::Rgb([96, 96, 96]);
    assert_eq!(*flow[0].get_pixel(0, 0), gray);
    assert_ne!(*flow[0].get_pixel(3 * 3, 3 * 3), gray);
}

#[test]
fn gradients_match_finite_differences() {
    let (n, c, hh, ww) = (1, 2, 8, 8);
    let f0 = (testutil::tensor(&[n, c, hh, ww], 5) * 0.3).expect("f");
    let b0 = (testutil::tensor(&[n, c, hh, ww], 6) * 0.3).expect("b");
    // One hole position at the matching resolution, so that most patches stay usable.
    let mut m = vec![0f64; hh * ww];
    for y in 2..4 {
        for x in 2..4 {
            m[y * ww + x] = 1.0;
        }
    }
    let mask = Tensor::from_vec(m, (n, 1, hh, ww), &Device::Cpu).expect("mask");
    let r = testutil::tensor(&[n, c, hh, ww], 7);
    let loss = |f: &Tensor, b: &Tensor| -> Tensor {
        contextual_attention(f, b, &mask, AttentionConfig::default())
            .and_then(|a| a.output * &r)
            .and_then(|t| t.sum_all())
            .expect("loss")
    };
    let (fv, bv) = (
        Var::from_tensor(&f0).expect("f"),
        Var::from_tensor(&b0).expect("b"),
    );
    let grads = loss(fv.as_tensor(), bv.as_tensor())
        .backward()
        .expect("backward");
    let h = 1e-6;
    for (which, base) in [(0, &f0), (1, &b0)] {
        let var = if which == 0 { &fv } else { &bv };
        let g = flat(grads.get(var.as_tensor()).expect("gradient"));
        let values = flat(base);
        let mut nonzero = 0;
        for j in 0..values.len() {
            let shifted = |d: f64| {
                let mut v = values.clone();
                v[j] += d;
                Tensor::from_vec(v, base.dims(), &Device::Cpu).expect("tensor")
            };
            let value = |t: Tensor| -> f64 {
                let l = if which == 0 {
                    loss(&t, &b0)
                } else {
                    loss(&f0, &t)
                };
                l.to_scalar().expect("scalar")
            };
            let fd = (value(shifted(h)) - value(shifted(-h))) / (2.0 * h);
            if fd.abs() > 1e-6 {
                nonzero += 1;
            }
            let err = (g[j] - fd).abs() / fd.abs().max(1e-3);
            assert!(
                err < 1e-5,
                "{} element {j}: autograd {} vs fd {fd}",
                ["f", "b"][which],
                g[j]
            );
        }
        // Matching reads the foreground at every other pixel only: a quarter of it matters.
        assert!(
            nonzero >= values.len() / 4,
            "only {nonzero} non-zero gradients"
        );
    }
}

#[test]
fn patch_gather_matches_tensor_ops_forward_and_backward() {
    for (i, &(c, h, w, k, s, pad)) in [(3, 8, 6, 4, 2, 1), (2, 5, 7, 3, 1, 1), (1, 6, 6, 3, 2, 0)]
        .iter()
        .enumerate()
    {
        let x = testutil::tensor(&[c, h, w], 30 + i as u64);
        let a = patches(&x, k, s, pad).expect("op");
        let b = patches_by_ops(&x, k, s, pad).expect("ops");
        assert_eq!(a.dims(), b.dims());
        assert_eq!(flat(&a), flat(&b), "case {i} forward");
        let r = testutil::tensor(a.dims(), 40 + i as u64);
        let grad = |f: &dyn Fn(&Tensor) -> Result<Tensor>| {
            let v = Var::from_tensor(&x).expect("var");
            let g = (f(v.as_tensor()).expect("patches") * &r)
                .and_then(|t| t.sum_all())
                .and_then(|t| t.backward())
                .expect("backward");
            flat(g.get(v.as_tensor()).expect("grad"))
        };
        let ga = grad(&|t| patches(t, k, s, pad));
        let gb = grad(&|t| patches_by_ops(t, k, s, pad));
        for (j, (p, q)) in ga.iter().zip(&gb).enumerate() {
            assert!((p - q).abs() < 1e-12, "case {i} gradient {j}: {p} vs {q}");
        }
    }
}

/// Timing of the layer at the `cpu` preset's size (not a test: run with --ignored --nocapture).
#[test]
#[ignore]
fn bench_attention() {
    let f = (testutil::tensor(&[4, 64, 32, 32], 1).to_dtype(DType::F32)).expect("f");
    let mask = hole_mask(4, 32, 32).to_dtype(DType::F32).expect("m");
    for _ in 0..3 {
        let t = std::time::Instant::now();
        let a = contextual_attention(&f, &f, &mask, AttentionConfig::default()).expect("a");
        let fwd = t.elapsed();
        let t = std::time::Instant::now();
        let _ = a.output.sum_all().and_then(|s| s.backward());
        println!("forward {fwd:?}, backward {:?}", t.elapsed());
    }
    let b = f.get(0).expect("b");
    let t = std::time::Instant::now();
    let _ = patches(&b, 4, 2, 1).expect("raw");
    println!("raw patches {:?}", t.elapsed());
    let t = std::time::Instant::now();
    let _ = patches(
        &b.narrow(1, 0, 16)
            .and_then(|x| x.narrow(2, 0, 16))
            .expect("s"),
        3,
        1,
        1,
    )
    .expect("w");
    println!("match patches {:?}", t.elapsed());
    let m = testutil::tensor(&[256, 256], 3)
        .to_dtype(DType::F32)
        .expect("m");
    let t = std::time::Instant::now();
    let _ = fuse_diagonal(&m, 3).expect("fuse");
    println!("fuse {:?}", t.elapsed());
}
