#!/usr/bin/env python3
"""PyTorch reference for `dtgan-studio bench --net`: the same networks, the same training step.

Builds the DTGAN generator (17 spectrally normalised convolutions with a learned log-gain each,
leaky ReLU 0.2, nearest x2 upsampling, the defect-free input added and clamped) or the critic
(global 6 + shared local 4 stride-2 5x5 convolutions over a 4x4 grid, spectrally normalised FC),
and times a training step (forward in training mode, loss, backward, Adam(0.5, 0.9)) on random
inputs, exactly as src/dtgan/bench.rs does. Prints the same JSON keys with --json.

    pip install torch numpy
    python3 bench/torch_nets.py --net generator --size 256 --batch 1 --threads 2 --json
"""
import argparse
import json
import statistics
import time

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.utils.parametrizations import spectral_norm


class GainConv(nn.Module):
    """A spectrally normalised conv whose normalised weight is scaled by exp(log_gain)."""

    def __init__(self, cin, cout, k, stride=1, dilation=1, learn_gain=True):
        super().__init__()
        self.conv = spectral_norm(
            nn.Conv2d(cin, cout, k, stride=stride, padding=dilation * (k // 2), dilation=dilation)
        )
        self.log_gain = nn.Parameter(torch.zeros(1)) if learn_gain else None

    def forward(self, x):
        w = self.conv.weight  # W / sigma, one power iteration in training mode
        if self.log_gain is not None:
            w = w * self.log_gain.exp()
        c = self.conv
        return F.conv2d(x, w, c.bias, c.stride, c.padding, c.dilation)


class Generator(nn.Module):
    def __init__(self, c, ch=3):
        super().__init__()
        plan = [
            (c, 5, 1, 1, False), (2 * c, 3, 2, 1, False), (2 * c, 3, 1, 1, False),
            (4 * c, 3, 2, 1, False), (4 * c, 3, 1, 1, False), (4 * c, 3, 1, 1, False),
            (4 * c, 3, 1, 2, False), (4 * c, 3, 1, 4, False), (4 * c, 3, 1, 8, False),
            (4 * c, 3, 1, 16, False), (4 * c, 3, 1, 1, False), (4 * c, 3, 1, 1, False),
            (2 * c, 3, 1, 1, True), (2 * c, 3, 1, 1, False), (c, 3, 1, 1, True),
            (max(c // 2, 1), 3, 1, 1, False), (ch, 3, 1, 1, False),
        ]
        self.ups = [p[4] for p in plan]
        layers, cin = [], ch + 1
        for cout, k, s, d, _ in plan:
            layers.append(GainConv(cin, cout, k, s, d))
            cin = cout
        self.layers = nn.ModuleList(layers)

    def forward(self, image, mask):
        x = torch.cat([image, mask], 1)
        for i, (layer, up) in enumerate(zip(self.layers, self.ups)):
            if up:
                x = F.interpolate(x, scale_factor=2, mode="nearest")
            x = layer(x)
            if i + 1 < len(self.layers):
                x = F.leaky_relu(x, 0.2)
        return (image + x).clamp(-1, 1)


class Stack(nn.Module):
    def __init__(self, cin, widths):
        super().__init__()
        convs = []
        for w in widths:
            convs.append(GainConv(cin, w, 5, stride=2, learn_gain=False))
            cin = w
        self.convs = nn.ModuleList(convs)

    def forward(self, x):
        for conv in self.convs:
            x = F.leaky_relu(conv(x), 0.2)
        return x.flatten(1)


class Critic(nn.Module):
    def __init__(self, w, size, ch=3, grid=4):
        super().__init__()
        self.grid = grid
        self.glob = Stack(ch + 1, [w, 2 * w, 4 * w, 4 * w, 4 * w, 4 * w])
        self.local = Stack(ch + 1, [w, 2 * w, 4 * w, 4 * w])
        side = lambda s, n: [s := -(-s // 2) for _ in range(n)][-1]
        features = 4 * w * (side(size, 6) ** 2 + grid * grid * side(size // grid, 4) ** 2)
        self.fc = spectral_norm(nn.Conv2d(features, 1, 1))

    def forward(self, image, mask):
        x = torch.cat([image, mask], 1)
        b, c, h, w = x.shape
        g = self.glob(x)
        cells = (
            x.reshape(b, c, self.grid, h // self.grid, self.grid, w // self.grid)
            .permute(0, 2, 4, 1, 3, 5)
            .reshape(b * self.grid * self.grid, c, h // self.grid, w // self.grid)
        )
        l = self.local(cells).reshape(b, -1)
        f = torch.cat([g, l], 1)
        return self.fc(f.reshape(b, -1, 1, 1)).reshape(b)


def conv_flops(model, inputs):
    """2 x multiply-adds of every convolution in one forward pass, counted with hooks."""
    total = [0]

    def hook(mod, inp, out):
        conv = mod.conv if isinstance(mod, GainConv) else mod
        k = conv.in_channels * conv.kernel_size[0] * conv.kernel_size[1]
        total[0] += 2 * out.numel() * k

    hooks = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, GainConv)]
    hooks += [model.fc.register_forward_hook(hook)] if isinstance(model, Critic) else []
    with torch.no_grad():
        model(*inputs)
    for h in hooks:
        h.remove()
    return total[0]


def timed(n, f):
    f()
    times = []
    for _ in range(max(n, 1)):
        t = time.perf_counter()
        f()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--net", choices=["generator", "critic"], default="generator")
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--width", type=int, default=32)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(1)
    dev = torch.device(a.device)
    b, s = a.batch, a.size
    image = torch.rand(b, 3, s, s, device=dev) * 2 - 1
    target = torch.rand(b, 3, s, s, device=dev) * 2 - 1
    mask = torch.zeros(b, 1, s, s, device=dev)
    q = s // 4
    mask[:, :, q : s - q, q : s - q] = 1
    if a.net == "generator":
        net = Generator(a.width).to(dev)

        def loss():
            fake = net(image, mask)
            diff = (fake - target).abs()
            inside = (diff * mask).sum() / (mask.sum() * 3)
            outside = (diff * (1 - mask)).sum() / ((1 - mask).sum() * 3)
            return inside + 5 * outside
    else:
        net = Critic(max(a.width // 2, 1), s).to(dev)

        def loss():
            return net(image, mask).mean()

    net.train()
    opt = torch.optim.Adam(net.parameters(), lr=1e-4, betas=(0.5, 0.9))
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)

    def forward():
        net(image, mask)
        sync()

    def step():
        opt.zero_grad(set_to_none=True)
        loss().backward()
        opt.step()
        sync()

    flops = conv_flops(net, (image, mask))
    forward_s = timed(a.steps, forward)
    step_s = timed(a.steps, step)
    report = {
        "net": a.net, "size": s, "batch": b, "width": a.width, "kernel": "pytorch",
        "threads": torch.get_num_threads(), "torch": torch.__version__,
        "step_seconds": step_s, "forward_seconds": forward_s, "forward_gflop": flops / 1e9,
        "gflops": flops / 1e9 / forward_s, "step_gflops": 3 * flops / 1e9 / step_s,
    }
    if a.json:
        print(json.dumps(report))
    else:
        print(
            f"{a.net} {s}x{s} batch {b} width {a.width}, PyTorch {torch.__version__}, "
            f"{report['threads']} threads: forward {forward_s:.3f} s "
            f"({report['gflops']:.1f} GFLOP/s), step {step_s:.3f} s ({report['step_gflops']:.1f} GFLOP/s)"
        )


if __name__ == "__main__":
    main()
