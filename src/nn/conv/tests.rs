use super::*;
use crate::nn::testutil;
use candle_core::{Device, Var};

/// (N, C, H, W, O, kernel, stride, padding, dilation)
type Case = (
    usize,
    usize,
    usize,
    usize,
    usize,
    usize,
    usize,
    usize,
    usize,
);

/// Odd, non-square and mixed-parity inputs; every dilation the generator uses; strides 1 and 2;
/// 1x1 kernels; an unpadded kernel; and a wide image whose column matrix spans several tiles.
const CASES: [Case; 13] = [
    (1, 3, 7, 5, 4, 3, 1, 1, 1),
    (2, 4, 9, 12, 3, 3, 2, 1, 1),
    (1, 2, 11, 8, 5, 5, 2, 2, 1),
    (2, 3, 13, 10, 2, 3, 1, 2, 2),
    (1, 4, 17, 19, 3, 3, 1, 4, 4),
    (1, 2, 20, 21, 2, 3, 1, 8, 8),
    (1, 2, 33, 35, 2, 3, 1, 16, 16),
    (3, 5, 6, 7, 4, 1, 1, 0, 1),
    (2, 6, 5, 4, 3, 1, 2, 0, 1),
    (1, 3, 8, 8, 2, 4, 2, 1, 1),
    (2, 3, 10, 9, 4, 3, 2, 0, 3),
    (1, 16, 20, 300, 8, 3, 1, 1, 1),
    (1, 5, 8, 9, 3, 3, 1, 0, 1),
];

fn params(case: &Case) -> Conv2dParams {
    Conv2dParams {
        stride: case.6,
        padding: case.7,
        dilation: case.8,
    }
}

fn inputs(case: &Case, seed: u64) -> (Tensor, Tensor) {
    let &(n, c, h, w, o, k, ..) = case;
    let x = testutil::tensor(&[n, c, h, w], seed);
    let wt = testutil::tensor(&[o, c, k, k], seed + 1);
    (x, wt)
}

fn flat(t: &Tensor) -> Vec<f64> {
    t.to_dtype(DType::F64)
        .and_then(|t| t.flatten_all())
        .and_then(|t| t.to_vec1())
        .expect("values")
}

/// Largest absolute difference relative to the largest magnitude of `want`.
fn rel_err(got: &Tensor, want: &Tensor) -> f64 {
    assert_eq!(got.dims(), want.dims());
    let (a, b) = (flat(got), flat(want));
    let scale = b.iter().fold(0f64, |m, v| m.max(v.abs())).max(1e-12);
    a.iter()
        .zip(&b)
        .fold(0f64, |m, (x, y)| m.max((x - y).abs()))
        / scale
}

/// `sum(conv(x, w) * r)` and its gradients with respect to `x` and `w`, by `conv`.
fn grads(
    x: &Tensor,
    w: &Tensor,
    r: &Tensor,
    conv: impl Fn(&Tensor, &Tensor) -> Result<Tensor>,
) -> Result<(Tensor, Tensor, Tensor)> {
    let (xv, wv) = (Var::from_tensor(x)?, Var::from_tensor(w)?);
    let y = conv(xv.as_tensor(), wv.as_tensor())?;
    let g = (&y * r)?.sum_all()?.backward()?;
    let gx = g.get(xv.as_tensor()).cloned();
    let gw = g.get(wv.as_tensor()).cloned();
    match (gx, gw) {
        (Some(gx), Some(gw)) => Ok((y, gx, gw)),
        _ => bail!("missing gradient"),
    }
}

#[test]
fn forward_matches_candle_in_f32() {
    for (i, case) in CASES.iter().enumerate() {
        let (x, w) = inputs(case, 10 * i as u64);
        let (x, w) = (
            x.to_dtype(DType::F32).expect("f32"),
            w.to_dtype(DType::F32).expect("f32"),
        );
        let p = params(case);
        let ours = conv2d(&x, &w, p).expect("fast conv");
        let theirs = x
            .conv2d(&w, p.padding, p.stride, p.dilation, 1)
            .expect("candle conv");
        let err = rel_err(&ours, &theirs);
        assert!(err < 1e-4, "case {case:?}: relative error {err}");
    }
}

#[test]
fn gradients_match_candle_in_f32() {
    for (i, case) in CASES.iter().enumerate() {
        // candle's own stride-2 backward fails when height and width differ in parity.
        if case.6 == 2 && (case.2 % 2 != case.3 % 2) {
            continue;
        }
        let (x, w) = inputs(case, 10 * i as u64 + 3);
        let p = params(case);
        let f32 = |t: &Tensor| t.to_dtype(DType::F32).expect("f32");
        let (x, w) = (f32(&x), f32(&w));
        let y_shape = x
            .conv2d(&w, p.padding, p.stride, p.dilation, 1)
            .expect("shape")
            .dims()
            .to_vec();
        let r = f32(&testutil::tensor(&y_shape, 99 + i as u64));
        let ours = grads(&x, &w, &r, |x, w| conv2d(x, w, p)).expect("fast grads");
        let theirs = grads(&x, &w, &r, |x, w| {
            x.conv2d(w, p.padding, p.stride, p.dilation, 1)
        })
        .expect("candle grads");
        for (name, a, b) in [
            ("input", &ours.1, &theirs.1),
            ("weight", &ours.2, &theirs.2),
        ] {
            let err = rel_err(a, b);
            assert!(
                err < 1e-4,
                "case {case:?}: {name} gradient relative error {err}"
            );
        }
    }
}

/// Central differences in f64 for every input and weight element of small convolutions,
/// including a non-square stride-2 input of mixed parity, which candle's own backward rejects.
#[test]
fn gradients_match_finite_differences_in_f64() {
    let cases: [Case; 4] = [
        (1, 2, 7, 6, 3, 3, 2, 1, 1),
        (2, 2, 5, 6, 2, 3, 1, 2, 2),
        (1, 3, 4, 5, 2, 1, 1, 0, 1),
        (1, 1, 9, 8, 2, 5, 2, 2, 1),
    ];
    for (i, case) in cases.iter().enumerate() {
        let (x, w) = inputs(case, 50 + i as u64);
        let p = params(case);
        let y = conv2d(&x, &w, p).expect("forward");
        let r = testutil::tensor(y.dims(), 70 + i as u64);
        let (_, gx, gw) = grads(&x, &w, &r, |x, w| conv2d(x, w, p)).expect("grads");
        let loss = |x: &Tensor, w: &Tensor| -> f64 {
            (conv2d(x, w, p).expect("forward") * &r)
                .and_then(|t| t.sum_all())
                .and_then(|t| t.to_scalar())
                .expect("loss")
        };
        let h = 1e-6;
        for (which, base, analytic) in [(0, &x, &gx), (1, &w, &gw)] {
            let values = flat(base);
            let g = flat(analytic);
            for j in 0..values.len() {
                let shifted = |d: f64| {
                    let mut v = values.clone();
                    v[j] += d;
                    Tensor::from_vec(v, base.dims(), &Device::Cpu).expect("tensor")
                };
                let (plus, minus) = (shifted(h), shifted(-h));
                let fd = if which == 0 {
                    (loss(&plus, &w) - loss(&minus, &w)) / (2.0 * h)
                } else {
                    (loss(&x, &plus) - loss(&x, &minus)) / (2.0 * h)
                };
                let err = (g[j] - fd).abs() / fd.abs().max(1e-3);
                assert!(
                    err < 1e-6,
                    "case {case:?}, {} element {j}: autograd {} vs fd {fd}",
                    ["input", "weight"][which],
                    g[j]
                );
            }
        }
    }
}

#[test]
fn untracked_input_gets_no_gradient_work() {
    let case = CASES[0];
    let (x, w) = inputs(&case, 5);
    let wv = Var::from_tensor(&w).expect("var");
    let y = conv2d(&x, wv.as_tensor(), params(&case)).expect("forward");
    let g = y.sum_all().and_then(|s| s.backward()).expect("backward");
    assert!(g.get(&x).is_none());
    assert!(g.get(wv.as_tensor()).is_some());
}

#[test]
fn bad_shapes_are_errors() {
    let x = testutil::tensor(&[1, 3, 4, 4], 1);
    let w = testutil::tensor(&[2, 2, 3, 3], 2);
    let err = conv2d(&x, &w, Conv2dParams::default()).expect_err("channel mismatch");
    assert!(err.to_string().contains("3 channels"), "{err}");
    let w = testutil::tensor(&[2, 3, 5, 5], 3);
    let err = conv2d(&x, &w, Conv2dParams::default()).expect_err("kernel too big");
    assert!(err.to_string().contains("does not fit"), "{err}");
}

#[test]
fn flop_count_is_two_per_multiply_add() {
    let p = Conv2dParams {
        stride: 2,
        padding: 1,
        dilation: 1,
    };
    // 8x8 input, stride 2 -> 4x4 output; K = 3 * 9.
    let flops = conv2d_flops(&[2, 3, 8, 8], &[5, 3, 3, 3], p).expect("flops");
    assert_eq!(flops, 2.0 * (2 * 5 * 16 * 27) as f64);
}

/// The fused op against conv + bias + activation in candle ops: outputs and the gradients of
/// input, weight and bias, for every activation (f64, so differences are rounding only).
#[test]
fn fused_bias_and_activation_match_candle_ops() {
    let case: Case = (2, 3, 9, 7, 4, 3, 2, 1, 1);
    let p = params(&case);
    let (x, w) = inputs(&case, 31);
    let b = testutil::tensor(&[4], 32);
    for act in [Act::Identity, Act::Relu, Act::Leaky(0.2), Act::Elu] {
        let run = |fused: bool| -> (Tensor, Vec<Tensor>) {
            let vars: Vec<Var> = [&x, &w, &b]
                .iter()
                .map(|t| Var::from_tensor(t).expect("var"))
                .collect();
            let (xv, wv, bv) = (
                vars[0].as_tensor(),
                vars[1].as_tensor(),
                vars[2].as_tensor(),
            );
            let y = if fused {
                conv2d_fused(xv, wv, Some(bv), p, act)
            } else {
                xv.conv2d(wv, p.padding, p.stride, p.dilation, 1)
                    .and_then(|y| y.broadcast_add(&bv.reshape((1, 4, 1, 1))?))
                    .and_then(|y| act.apply(&y))
            }
            .expect("forward");
            let r = testutil::tensor(y.dims(), 33);
            let g = (&y * &r)
                .and_then(|t| t.sum_all())
                .and_then(|t| t.backward())
                .expect("backward");
            let grads = [xv, wv, bv]
                .iter()
                .map(|v| g.get(v).expect("gradient").clone())
                .collect();
            (y, grads)
        };
        let (y1, g1) = run(true);
        let (y2, g2) = run(false);
        assert!(rel_err(&y1, &y2) < 1e-12, "{act:?}: outputs differ");
        for (name, a, b) in [
            ("x", &g1[0], &g2[0]),
            ("w", &g1[1], &g2[1]),
            ("b", &g1[2], &g2[2]),
        ] {
            let err = rel_err(a, b);
            assert!(err < 1e-12, "{act:?}: gradient of {name} differs by {err}");
        }
    }
}

#[test]
fn reference_kernel_switch_routes_to_candle() {
    let case = CASES[1];
    let (x, w) = inputs(&case, 41);
    let p = params(&case);
    let fast = conv2d(&x, &w, p).expect("fast");
    set_kernel(ConvKernel::Candle);
    let reference = conv2d(&x, &w, p);
    set_kernel(ConvKernel::Fast);
    let reference = reference.expect("candle");
    assert!(rel_err(&fast, &reference) < 1e-12);
}

#[test]
fn non_positive_leaky_slope_is_refused() {
    let (x, w) = inputs(&CASES[0], 1);
    let err = conv2d_fused(&x, &w, None, params(&CASES[0]), Act::Leaky(0.0)).expect_err("slope 0");
    assert!(err.to_string().contains("slope"), "{err}");
}

/// Training must be reproducible: the gradients may not depend on the number of threads or on
/// how rayon schedules the jobs.
#[test]
fn gradients_do_not_depend_on_the_thread_count() {
    let case: Case = (2, 16, 20, 64, 8, 3, 1, 1, 1);
    let (x, w) = inputs(&case, 61);
    let (x, w) = (
        x.to_dtype(DType::F32).expect("f32"),
        w.to_dtype(DType::F32).expect("f32"),
    );
    let p = params(&case);
    let r = testutil::tensor(&[2, 8, 20, 64], 62)
        .to_dtype(DType::F32)
        .expect("f32");
    let run = |threads: usize| -> Vec<Vec<f64>> {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .expect("pool");
        pool.install(|| {
            let (y, gx, gw) = grads(&x, &w, &r, |x, w| conv2d(x, w, p)).expect("grads");
            vec![flat(&y), flat(&gx), flat(&gw)]
        })
    };
    let one = run(1);
    for threads in [2, 3, 5] {
        assert!(run(threads) == one, "results differ with {threads} threads");
    }
}

/// The transposed convolution against candle's (stride 2 with a 4x4 kernel, as contextual
/// attention pastes patches, and stride 1), forward and both gradients, in f32; and its
/// gradients against central differences in f64.
#[test]
fn transposed_convolution_matches_candle_and_finite_differences() {
    // (N, O, h, w, C, kernel, stride, padding, out H, out W)
    let cases = [
        (1, 5, 4, 4, 3, 4, 2, 1, 8, 8),
        (2, 3, 5, 3, 2, 3, 1, 1, 5, 3),
        (1, 4, 3, 5, 2, 4, 2, 1, 6, 10),
    ];
    for (i, &(n, o, h, w, c, k, stride, padding, oh, ow)) in cases.iter().enumerate() {
        let p = Conv2dParams {
            stride,
            padding,
            dilation: 1,
        };
        let y = testutil::tensor(&[n, o, h, w], 200 + i as u64);
        let wt = testutil::tensor(&[o, c, k, k], 210 + i as u64);
        let r = testutil::tensor(&[n, c, oh, ow], 220 + i as u64);
        let f32 = |t: &Tensor| t.to_dtype(DType::F32).expect("f32");
        let ours = grads(&f32(&y), &f32(&wt), &f32(&r), |y, w| {
            conv_transpose2d(y, w, (oh, ow), p)
        })
        .expect("fast");
        let theirs = grads(&f32(&y), &f32(&wt), &f32(&r), |y, w| {
            y.conv_transpose2d(w, padding, 0, stride, 1)
        })
        .expect("candle");
        for (name, a, b) in [
            ("output", &ours.0, &theirs.0),
            ("input gradient", &ours.1, &theirs.1),
            ("weight gradient", &ours.2, &theirs.2),
        ] {
            let err = rel_err(a, b);
            assert!(err < 1e-4, "case {i}: {name} relative error {err}");
        }
        let (_, gy, gw) =
            grads(&y, &wt, &r, |y, w| conv_transpose2d(y, w, (oh, ow), p)).expect("f64 grads");
        let loss = |y: &Tensor, w: &Tensor| -> f64 {
            (conv_transpose2d(y, w, (oh, ow), p).expect("forward") * &r)
                .and_then(|t| t.sum_all())
                .and_then(|t| t.to_scalar())
                .expect("loss")
        };
        let h = 1e-6;
        for (which, base, analytic) in [(0, &y, &gy), (1, &wt, &gw)] {
            let values = flat(base);
            let g = flat(analytic);
            for j in (0..values.len()).step_by(3) {
                let shifted = |d: f64| {
                    let mut v = values.clone();
                    v[j] += d;
                    Tensor::from_vec(v, base.dims(), &Device::Cpu).expect("tensor")
                };
                let fd = if which == 0 {
                    (loss(&shifted(h), &wt) - loss(&shifted(-h), &wt)) / (2.0 * h)
                } else {
                    (loss(&y, &shifted(h)) - loss(&y, &shifted(-h))) / (2.0 * h)
                };
                let err = (g[j] - fd).abs() / fd.abs().max(1e-3);
                assert!(
                    err < 1e-6,
                    "case {i}, arg {which}, element {j}: {} vs {fd}",
                    g[j]
                );
            }
        }
    }
}
