//! The inpainting networks (DeepFill v1 layout): a coarse network, a refinement network with a
//! dilated-convolution branch and a contextual-attention branch, and global + local critics.
//!
//! Every convolution is a [`SnConv2d`] on the fast kernel. In the generator each layer has a
//! learned gain, calibrated on the first batch (as the DTGAN generator's), because without batch
//! norm and with spectral norm a deep chain's signal otherwise fades; the critics keep unit gain,
//! so they stay 1-Lipschitz per layer (no gradient penalty is possible in candle).

use candle_core::{DType, Device, Result, Tensor, Var};
use candle_nn::{ModuleT, VarBuilder, VarMap};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::attention::{Attention, AttentionConfig, contextual_attention};
use super::config::InpaintModel;
use crate::dtgan::Activation;
use crate::dtgan::nets::ConvStack;
use crate::nn::conv::Act;
use crate::nn::spectral::{SnConv2d, SnConv2dConfig, sn_chain};
use crate::nn::upsample::upsample_nearest2x;

/// Power iterations before calibration, so that `sigma` has converged when gains are measured.
const CALIBRATION_ITERS: usize = 30;
/// RMS of an image output after calibration.
const IMAGE_RMS: f32 = 0.5;

/// One layer of a [`Chain`]: (out channels, kernel, stride, dilation, upsample before, activation
/// after).
pub type LayerSpec = (usize, usize, usize, usize, bool, bool);

#[derive(Debug, Clone)]
struct ChainLayer {
    conv: SnConv2d,
    upsample: bool,
    act: bool,
}

/// A straight sequence of convolutions with optional nearest x2 upsampling before and the
/// activation after each.
#[derive(Debug, Clone)]
pub struct Chain {
    layers: Vec<ChainLayer>,
    activation: Activation,
    out_channels: usize,
}

impl Chain {
    /// Builds the layers `plan` on `in_ch` channels, named `conv00`, `conv01`, ... under `vb`.
    pub fn new(
        in_ch: usize,
        plan: &[LayerSpec],
        activation: Activation,
        vb: VarBuilder,
        buffers: &VarMap,
    ) -> Result<Self> {
        let mut layers = Vec::with_capacity(plan.len());
        let mut c = in_ch;
        for (i, &(out, kernel, stride, dilation, upsample, act)) in plan.iter().enumerate() {
            let cfg = SnConv2dConfig {
                in_channels: c,
                out_channels: out,
                kernel,
                stride,
                padding: dilation * (kernel / 2),
                dilation,
                bias: true,
                gain: 1.0,
                learn_gain: true,
            };
            layers.push(ChainLayer {
                conv: SnConv2d::new(cfg, vb.pp(format!("conv{i:02}")), buffers)?,
                upsample,
                act,
            });
            c = out;
        }
        Ok(Self {
            layers,
            activation,
            out_channels: c,
        })
    }

    /// Convolutions in the chain.
    pub fn len(&self) -> usize {
        self.layers.len()
    }

    /// Whether the chain has no layer.
    pub fn is_empty(&self) -> bool {
        self.layers.is_empty()
    }

    /// Channels of the output.
    pub fn out_channels(&self) -> usize {
        self.out_channels
    }

    /// Stride and dilation of each layer.
    pub fn strides_and_dilations(&self) -> Vec<(usize, usize)> {
        self.layers
            .iter()
            .map(|l| (l.conv.config().stride, l.conv.config().dilation))
            .collect()
    }

    /// Runs the chain.
    pub fn forward(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        let act = self.activation.fused();
        let layers = self.layers.iter().map(|l| {
            let act = if l.act { act } else { Act::Identity };
            (&l.conv, l.upsample, act)
        });
        sn_chain(x, layers, train)
    }

    /// Convolution FLOP (2 per multiply-add) of one forward pass on `(n, c, h, w)` input.
    pub fn flops(&self, (n, _, h, w): (usize, usize, usize, usize)) -> f64 {
        let (mut h, mut w) = (h, w);
        let mut total = 0.0;
        for l in &self.layers {
            if l.upsample {
                (h, w) = (2 * h, 2 * w);
            }
            let c = l.conv.config();
            let (ho, wo) = (c.output_size(h).unwrap_or(0), c.output_size(w).unwrap_or(0));
            total +=
                2.0 * (n * c.out_channels * ho * wo * c.in_channels * c.kernel * c.kernel) as f64;
            (h, w) = (ho, wo);
        }
        total
    }

    /// Sets each layer's gain so that its pre-activations have unit RMS on `x` (a last layer
    /// without activation: [`IMAGE_RMS`]), layer after layer; returns the chain's output.
    pub fn calibrate(&self, x: &Tensor) -> Result<Tensor> {
        let mut x = x.clone();
        for layer in &self.layers {
            if layer.upsample {
                x = upsample_nearest2x(&x)?;
            }
            if let Some(log_gain) = layer.conv.log_gain() {
                let pre = layer.conv.forward_t(&x, false)?;
                let rms = pre
                    .sqr()?
                    .mean_all()?
                    .sqrt()?
                    .to_dtype(DType::F32)?
                    .to_scalar::<f32>()?;
                let target = if layer.act { 1.0 } else { IMAGE_RMS };
                if rms.is_finite() && rms > 1e-12 {
                    let g = (log_gain + f64::from((target / rms).ln()))?;
                    Var::from_tensor(log_gain)?.set(&g)?;
                }
            }
            x = layer.conv.forward_t(&x, false)?;
            if layer.act {
                x = self.activation.apply(&x)?;
            }
        }
        Ok(x)
    }
}

/// The 17-convolution layout of the DTGAN generator (DeepFill v1's coarse network) from `c`
/// channels to `out` channels.
pub fn coarse_plan(c: usize, out: usize) -> Vec<LayerSpec> {
    let half = (c / 2).max(1);
    vec![
        (c, 5, 1, 1, false, true),
        (2 * c, 3, 2, 1, false, true),
        (2 * c, 3, 1, 1, false, true),
        (4 * c, 3, 2, 1, false, true),
        (4 * c, 3, 1, 1, false, true),
        (4 * c, 3, 1, 1, false, true),
        (4 * c, 3, 1, 2, false, true),
        (4 * c, 3, 1, 4, false, true),
        (4 * c, 3, 1, 8, false, true),
        (4 * c, 3, 1, 16, false, true),
        (4 * c, 3, 1, 1, false, true),
        (4 * c, 3, 1, 1, false, true),
        (2 * c, 3, 1, 1, true, true),
        (2 * c, 3, 1, 1, false, true),
        (c, 3, 1, 1, true, true),
        (half, 3, 1, 1, false, true),
        (out, 3, 1, 1, false, false),
    ]
}

/// What the generator returns.
#[derive(Debug, Clone)]
pub struct InpaintOutput {
    /// The coarse network's output, `(B, C, H, W)` in [-1, 1].
    pub coarse: Tensor,
    /// The refinement network's output.
    pub refined: Tensor,
    /// The contextual-attention layer's matches (for the flow picture).
    pub attention: Attention,
    /// The hole at the attention layer's resolution, `(B, 1, H/4, W/4)`.
    pub feature_mask: Tensor,
}

impl InpaintOutput {
    /// The refined output inside the hole and `image` outside it.
    pub fn completed(&self, image: &Tensor, mask: &Tensor) -> Result<Tensor> {
        paste(&self.refined, image, mask)
    }
}

/// `fill` where `mask` is 1, `image` elsewhere.
pub fn paste(fill: &Tensor, image: &Tensor, mask: &Tensor) -> Result<Tensor> {
    let keep = mask.ones_like()?.sub(mask)?;
    fill.broadcast_mul(mask)?
        .broadcast_add(&image.broadcast_mul(&keep)?)
}

/// The two-stage generator.
#[derive(Debug, Clone)]
pub struct InpaintNet {
    coarse: Chain,
    conv_branch: Chain,
    att_pre: Chain,
    att_post: Chain,
    merge: Chain,
    attention: AttentionConfig,
}

impl InpaintNet {
    /// Builds (or reuses) the weights under `vb` and the spectral-norm vectors in `buffers`.
    pub fn new(m: &InpaintModel, vb: VarBuilder, buffers: &VarMap) -> Result<Self> {
        let (c, ch, act) = (m.width, m.channels, m.activation);
        let input = ch + 2;
        let coarse = Chain::new(input, &coarse_plan(c, ch), act, vb.pp("coarse"), buffers)?;
        let conv_branch = Chain::new(
            input,
            &[
                (c, 5, 1, 1, false, true),
                (c, 3, 2, 1, false, true),
                (2 * c, 3, 1, 1, false, true),
                (2 * c, 3, 2, 1, false, true),
                (4 * c, 3, 1, 1, false, true),
                (4 * c, 3, 1, 1, false, true),
                (4 * c, 3, 1, 2, false, true),
                (4 * c, 3, 1, 4, false, true),
                (4 * c, 3, 1, 8, false, true),
                (4 * c, 3, 1, 16, false, true),
            ],
            act,
            vb.pp("refine_conv"),
            buffers,
        )?;
        let att_pre = Chain::new(
            input,
            &[
                (c, 5, 1, 1, false, true),
                (c, 3, 2, 1, false, true),
                (2 * c, 3, 1, 1, false, true),
                (4 * c, 3, 2, 1, false, true),
                (4 * c, 3, 1, 1, false, true),
                (4 * c, 3, 1, 1, false, true),
            ],
            act,
            vb.pp("refine_att_pre"),
            buffers,
        )?;
        let att_post = Chain::new(
            4 * c,
            &[(4 * c, 3, 1, 1, false, true), (4 * c, 3, 1, 1, false, true)],
            act,
            vb.pp("refine_att_post"),
            buffers,
        )?;
        let half = (c / 2).max(1);
        let merge = Chain::new(
            8 * c,
            &[
                (4 * c, 3, 1, 1, false, true),
                (4 * c, 3, 1, 1, false, true),
                (2 * c, 3, 1, 1, true, true),
                (2 * c, 3, 1, 1, false, true),
                (c, 3, 1, 1, true, true),
                (half, 3, 1, 1, false, true),
                (ch, 3, 1, 1, false, false),
            ],
            act,
            vb.pp("refine_merge"),
            buffers,
        )?;
        Ok(Self {
            coarse,
            conv_branch,
            att_pre,
            att_post,
            merge,
            attention: AttentionConfig::default(),
        })
    }

    /// The coarse network.
    pub fn coarse(&self) -> &Chain {
        &self.coarse
    }

    /// The refinement network's parts: dilated branch, attention branch before and after the
    /// attention layer, and the decoder.
    pub fn refinement(&self) -> [&Chain; 4] {
        [
            &self.conv_branch,
            &self.att_pre,
            &self.att_post,
            &self.merge,
        ]
    }

    fn coarse_input(image: &Tensor, mask: &Tensor) -> Result<Tensor> {
        let keep = mask.ones_like()?.sub(mask)?;
        let masked = image.broadcast_mul(&keep)?;
        Tensor::cat(&[&masked, &mask.ones_like()?, mask], 1)
    }

    /// `image`: `(B, C, H, W)` in [-1, 1] (what is under the hole is never read); `mask`:
    /// `(B, 1, H, W)`, 1 in the hole; `H` and `W` multiples of 32.
    pub fn forward(&self, image: &Tensor, mask: &Tensor, train: bool) -> Result<InpaintOutput> {
        self.run(image, mask, train, false)
    }

    /// Sets every generator gain on this batch (after converging the spectral-norm vectors).
    pub fn calibrate(&self, image: &Tensor, mask: &Tensor) -> Result<()> {
        for _ in 0..CALIBRATION_ITERS {
            self.forward(image, mask, true)?;
        }
        self.run(image, mask, false, true).map(|_| ())
    }

    /// Times each stage of a training-mode forward pass (median of `reps` after one warm-up):
    /// (stage name, seconds, convolution GFLOP). Attention counts its matching and pasting
    /// convolutions.
    pub fn profile(
        &self,
        image: &Tensor,
        mask: &Tensor,
        reps: usize,
    ) -> Result<Vec<(String, f64, f64)>> {
        let n = image.dim(0)?;
        let x = Self::coarse_input(image, mask)?;
        let timed = |f: &dyn Fn() -> Result<Tensor>| -> Result<(Tensor, f64)> {
            let mut times = Vec::with_capacity(reps.max(1));
            let mut out = f()?;
            for _ in 0..reps.max(1) {
                let t = std::time::Instant::now();
                out = f()?;
                times.push(t.elapsed().as_secs_f64());
            }
            times.sort_by(f64::total_cmp);
            Ok((out, times[times.len() / 2]))
        };
        let mut rows = Vec::new();
        let (coarse, t) = timed(&|| self.coarse.forward(&x, true))?;
        rows.push(("coarse".to_string(), t, self.coarse.flops(x.dims4()?) / 1e9));
        let mixed = paste(&coarse.clamp(-1f32, 1f32)?, image, mask)?;
        let xr = Tensor::cat(&[&mixed, &mask.ones_like()?, mask], 1)?;
        let (hallu, t) = timed(&|| self.conv_branch.forward(&xr, true))?;
        rows.push((
            "refine.dilated".into(),
            t,
            self.conv_branch.flops(xr.dims4()?) / 1e9,
        ));
        let (feat, t) = timed(&|| self.att_pre.forward(&xr, true))?;
        rows.push((
            "refine.att_pre".into(),
            t,
            self.att_pre.flops(xr.dims4()?) / 1e9,
        ));
        let fm = mask.max_pool2d(4)?;
        let (att, t) =
            timed(&|| contextual_attention(&feat, &feat, &fm, self.attention).map(|a| a.output))?;
        let (_, c, fh, fw) = feat.dims4()?;
        let l = (fh / 2) * (fw / 2);
        let att_flop = 2.0 * (n * l * c * l) as f64 * (9.0 + 16.0);
        rows.push(("contextual attention".into(), t, att_flop / 1e9));
        let (pm, t) = timed(&|| self.att_post.forward(&att, true))?;
        rows.push((
            "refine.att_post".into(),
            t,
            self.att_post.flops(att.dims4()?) / 1e9,
        ));
        let cat = Tensor::cat(&[&hallu, &pm], 1)?;
        let (_, t) = timed(&|| self.merge.forward(&cat, true))?;
        rows.push((
            "refine.decoder".into(),
            t,
            self.merge.flops(cat.dims4()?) / 1e9,
        ));
        Ok(rows)
    }

    fn run(
        &self,
        image: &Tensor,
        mask: &Tensor,
        train: bool,
        calibrate: bool,
    ) -> Result<InpaintOutput> {
        let pass = |chain: &Chain, x: &Tensor| {
            if calibrate {
                chain.calibrate(x)
            } else {
                chain.forward(x, train)
            }
        };
        let x = Self::coarse_input(image, mask)?;
        let coarse = pass(&self.coarse, &x)?.clamp(-1f32, 1f32)?;
        let mixed = paste(&coarse, image, mask)?;
        let x = Tensor::cat(&[&mixed, &mask.ones_like()?, mask], 1)?;
        let hallu = pass(&self.conv_branch, &x)?;
        let feat = pass(&self.att_pre, &x)?;
        // A feature position is in the hole when any pixel of its 4x4 block is.
        let feature_mask = mask.max_pool2d(4)?;
        let attention = contextual_attention(&feat, &feat, &feature_mask, self.attention)?;
        let pm = pass(&self.att_post, &attention.output)?;
        let refined = pass(&self.merge, &Tensor::cat(&[&hallu, &pm], 1)?)?.clamp(-1f32, 1f32)?;
        Ok(InpaintOutput {
            coarse,
            refined,
            attention,
            feature_mask,
        })
    }
}

/// Global and local critics: the global one sees the whole image (and the mask), the local one
/// the square of half the image side centred on the hole; each ends in a spectral-norm fully
/// connected layer, and the score is their sum (the sum of the two Wasserstein losses).
#[derive(Debug, Clone)]
pub struct InpaintCritic {
    global: ConvStack,
    local: ConvStack,
    fc_global: SnConv2d,
    fc_local: SnConv2d,
    local_side: usize,
}

impl InpaintCritic {
    /// Builds (or reuses) the weights under `vb` and the spectral-norm vectors in `buffers`.
    pub fn new(m: &InpaintModel, vb: VarBuilder, buffers: &VarMap) -> Result<Self> {
        let w = m.critic_width;
        let widths = [w, 2 * w, 4 * w, 4 * w];
        let in_ch = m.channels + 1;
        let global = ConvStack::new(in_ch, &widths, vb.pp("global"), buffers)?;
        let local = ConvStack::new(in_ch, &widths, vb.pp("local"), buffers)?;
        let side = m.image_size;
        let local_side = side / 2;
        let gs = global.output_side(side);
        let ls = local.output_side(local_side);
        let fc_global = SnConv2d::new(
            SnConv2dConfig::new(4 * w * gs * gs, 1, 1),
            vb.pp("fc_global"),
            buffers,
        )?;
        let fc_local = SnConv2d::new(
            SnConv2dConfig::new(4 * w * ls * ls, 1, 1),
            vb.pp("fc_local"),
            buffers,
        )?;
        Ok(Self {
            global,
            local,
            fc_global,
            fc_local,
            local_side,
        })
    }

    /// Side of the local critic's window.
    pub fn local_side(&self) -> usize {
        self.local_side
    }

    /// Top-left corner of the local window around a hole (clamped into the image).
    pub fn local_corner(
        &self,
        image_side: usize,
        hole: (usize, usize, usize, usize),
    ) -> (usize, usize) {
        let (y, x, h, w) = hole;
        let s = self.local_side;
        let place = |start: usize, len: usize| {
            (start + len / 2)
                .saturating_sub(s / 2)
                .min(image_side.saturating_sub(s))
        };
        (place(y, h), place(x, w))
    }

    /// One score per image, `(B,)`. `corners`: each image's local window (from
    /// [`Self::local_corner`]).
    pub fn forward(
        &self,
        image: &Tensor,
        mask: &Tensor,
        corners: &[(usize, usize)],
        train: bool,
    ) -> Result<Tensor> {
        let x = Tensor::cat(&[image, mask], 1)?;
        let b = x.dim(0)?;
        let s = self.local_side;
        let crops = corners
            .iter()
            .enumerate()
            .map(|(i, &(y, xx))| x.narrow(0, i, 1)?.narrow(2, y, s)?.narrow(3, xx, s))
            .collect::<Result<Vec<_>>>()?;
        let local = Tensor::cat(&crops, 0)?;
        let fc = |fc: &SnConv2d, f: Tensor| -> Result<Tensor> {
            let n = f.dim(1)?;
            fc.forward_t(&f.reshape((b, n, 1, 1))?, train)?.reshape(b)
        };
        let g = fc(&self.fc_global, self.global.forward(&x, train)?)?;
        let l = fc(&self.fc_local, self.local.forward(&local, train)?)?;
        g + l
    }
}

/// The name prefix of the generator's variables and spectral-norm vectors (the critics' is
/// `critic`); checkpoints store them under it.
pub const GENERATOR_PREFIX: &str = "inpaint";

/// Both networks and their variables.
pub struct InpaintGan {
    /// The sizes.
    pub model: InpaintModel,
    /// Where the tensors live.
    pub device: Device,
    /// Generator weights.
    pub gen_vars: VarMap,
    /// Critic weights.
    pub critic_vars: VarMap,
    /// Spectral-norm vectors.
    pub buffers: VarMap,
    /// The generator.
    pub net: InpaintNet,
    /// The critics.
    pub critic: InpaintCritic,
}

impl InpaintGan {
    /// Fresh networks with weights drawn from `seed`.
    pub fn new(model: &InpaintModel, device: &Device, seed: u64) -> Result<Self> {
        let gen_vars = VarMap::new();
        let critic_vars = VarMap::new();
        let buffers = VarMap::new();
        let gvb = VarBuilder::from_varmap(&gen_vars, DType::F32, device);
        let cvb = VarBuilder::from_varmap(&critic_vars, DType::F32, device);
        let net = InpaintNet::new(model, gvb.pp(GENERATOR_PREFIX), &buffers)?;
        let critic = InpaintCritic::new(model, cvb.pp("critic"), &buffers)?;
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        crate::dtgan::model::seeded_init(&gen_vars, &mut rng, false)?;
        crate::dtgan::model::seeded_init(&critic_vars, &mut rng, false)?;
        crate::dtgan::model::seeded_init(&buffers, &mut rng, true)?;
        Ok(Self {
            model: *model,
            device: device.clone(),
            gen_vars,
            critic_vars,
            buffers,
            net,
            critic,
        })
    }

    /// The generator alone (for applying a trained model), weights under `vb`.
    pub fn generator_only(
        model: &InpaintModel,
        vb: VarBuilder,
        buffers: &VarMap,
    ) -> Result<InpaintNet> {
        InpaintNet::new(model, vb.pp(GENERATOR_PREFIX), buffers)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dtgan::Preset;
    use crate::inpaint::config::InpaintConfig;

    #[test]
    fn layout_follows_deepfill_v1() {
        let m = InpaintConfig::preset(Preset::Tiny).model;
        let gan = InpaintGan::new(&m, &Device::Cpu, 1).expect("nets");
        assert_eq!(gan.net.coarse().len(), 17, "coarse network");
        let [conv, pre, post, merge] = gan.net.refinement();
        let dil: Vec<usize> = conv
            .strides_and_dilations()
            .iter()
            .map(|&(_, d)| d)
            .filter(|&d| d > 1)
            .collect();
        assert_eq!(dil, vec![2, 4, 8, 16], "dilated branch");
        let down = |c: &Chain| {
            c.strides_and_dilations()
                .iter()
                .filter(|&&(s, _)| s == 2)
                .count()
        };
        assert_eq!(
            (down(conv), down(pre)),
            (2, 2),
            "both branches reach a quarter"
        );
        assert_eq!(conv.out_channels() + post.out_channels(), 8 * m.width);
        assert_eq!(merge.out_channels(), 3);
        let dev = Device::Cpu;
        let image = Tensor::rand(-1f32, 1f32, (2, 3, 32, 32), &dev).expect("image");
        let mut mv = vec![0f32; 2 * 32 * 32];
        for y in 8..20 {
            for x in 10..22 {
                mv[y * 32 + x] = 1.0;
                mv[1024 + y * 32 + x] = 1.0;
            }
        }
        let mask = Tensor::from_vec(mv, (2, 1, 32, 32), &dev).expect("mask");
        let out = gan.net.forward(&image, &mask, false).expect("forward");
        assert_eq!(out.coarse.dims(), &[2, 3, 32, 32]);
        assert_eq!(out.refined.dims(), &[2, 3, 32, 32]);
        // What is under the hole is never read: changing it changes nothing.
        let other = (image.clone() * 0.5).expect("other");
        let mixed = paste(&other, &image, &mask).expect("mixed");
        let out2 = gan.net.forward(&mixed, &mask, false).expect("forward");
        let diff: f32 = (out.refined - out2.refined)
            .and_then(|d| d.abs())
            .and_then(|d| d.max_all())
            .and_then(|d| d.to_scalar())
            .expect("diff");
        assert_eq!(diff, 0.0);
        let corner = gan.critic.local_corner(32, (8, 10, 12, 12));
        assert_eq!(corner, (6, 8));
        let score = gan
            .critic
            .forward(&image, &mask, &[corner, corner], true)
            .expect("critic");
        assert_eq!(score.dims(), &[2]);
    }
}
