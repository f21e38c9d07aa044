"""Training the AC-GAN with WGAN-GP (Gulrajani et al. 2017; Odena et al. 2017) as the CS236 study
does (``trainers/gan_trainer.py``): its own loop, because a GAN alternates two optimisers and
the critic's loss needs a gradient penalty, which :func:`lib.train.fit` (one model, one loss)
does not do.

Per generator iteration ``it`` (learning rates decayed linearly from ``lr`` to 0 over ``steps``):

* ``n_critic`` critic steps, each on a random batch of real images (dequantised with
  U(0, 1/128) in [-1, 1]) and as many samples for uniformly drawn labels::

      L_D = D(fake) - D(real) + gp_weight * GP + aux_weight_d * CE(aux(real), y_real)

* one generator step on ``g_batch_factor x batch_size`` samples::

      L_G = -D(G(z, y)) + aux_weight_g * CE(aux(G(z, y)), y)

Adam(2e-4, betas (0, 0.9)), both. Unlike the study, real batches are drawn at random (its
critic batches indexed the training set unshuffled). The whole state (both networks, both
optimisers' moments, the iteration and the RNG seeding rule) is one :class:`ACGANState` module,
so the store can save it as safetensors and a killed run resumes where it stopped; every
iteration re-seeds torch from ``(seed, it)``, so a resumed run is identical to an uninterrupted one.
"""
from __future__ import annotations

import time
from typing import Callable

import pandas as pd
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor
from tqdm.auto import tqdm

from ..train import pick_device
from .nets import Critic, Generator, from_pixels


def gradient_penalty(critic: Callable[[Tensor], Tensor], real: Tensor, fake: Tensor,
                     alpha: Tensor | None = None) -> Tensor:
    """WGAN-GP's penalty ``mean((||grad_x D(x_hat)||_2 - 1)^2)`` at ``x_hat = alpha real + (1 - alpha) fake``
    with ``alpha ~ U(0, 1)`` per sample (or the given ``alpha``, shape ``(N,)``). ``critic(x)`` returns
    one score per sample. The graph is kept (``create_graph``) so the penalty trains the critic."""
    if alpha is None:
        alpha = torch.rand(len(real), device=real.device)
    a = alpha.to(real.dtype).view(-1, *([1] * (real.dim() - 1)))
    x_hat = (a * real.detach() + (1 - a) * fake.detach()).requires_grad_(True)
    (grad,) = torch.autograd.grad(critic(x_hat).sum(), x_hat, create_graph=True)
    return ((grad.flatten(1).norm(dim=1) - 1) ** 2).mean()


class ACGANState(nn.Module):
    """Everything a resumed run needs, as one module (parameters and buffers only, so it is stored
    as safetensors): the generator ``G``, the critic ``D``, the Adam moments of both optimisers
    (``exp_avg``/``exp_avg_sq`` per parameter, as zero buffers until the first step), each
    optimiser's step count, and ``it`` (generator iterations done)."""

    def __init__(self, G: Generator, D: Critic):
        super().__init__()
        self.G, self.D = G, D
        self.register_buffer("it", torch.zeros((), dtype=torch.long))
        for tag, net in (("G", G), ("D", D)):
            self.register_buffer(f"opt{tag}_step", torch.zeros(()))
            for i, p in enumerate(net.parameters()):
                self.register_buffer(f"opt{tag}_m_{i}", torch.zeros_like(p))
                self.register_buffer(f"opt{tag}_v_{i}", torch.zeros_like(p))

    @property
    def step(self) -> int:
        return int(self.it)

    def optimizers(self, lr: float, betas: tuple[float, float]) -> tuple[torch.optim.Adam, torch.optim.Adam]:
        """Adam for ``G`` and ``D`` with the stored moments (fresh ones at iteration 0)."""
        opts = []
        for tag, net in (("G", self.G), ("D", self.D)):
            opt = torch.optim.Adam(net.parameters(), lr=lr, betas=betas)
            step = float(getattr(self, f"opt{tag}_step"))
            if step > 0:
                state = opt.state_dict()
                state["state"] = {i: {"step": torch.tensor(step), "exp_avg": getattr(self, f"opt{tag}_m_{i}").clone(),
                                      "exp_avg_sq": getattr(self, f"opt{tag}_v_{i}").clone()}
                                  for i, _ in enumerate(net.parameters())}
                opt.load_state_dict(state)
            opts.append(opt)
        return opts[0], opts[1]

    @torch.no_grad()
    def capture(self, opt_g: torch.optim.Optimizer, opt_d: torch.optim.Optimizer, it: int) -> None:
        """Copy the optimisers' moments and the iteration count into the buffers (before saving)."""
        self.it.fill_(it)
        for tag, net, opt in (("G", self.G, opt_g), ("D", self.D, opt_d)):
            for i, p in enumerate(net.parameters()):
                st = opt.state.get(p)
                if st:
                    getattr(self, f"opt{tag}_m_{i}").copy_(st["exp_avg"])
                    getattr(self, f"opt{tag}_v_{i}").copy_(st["exp_avg_sq"])
                    getattr(self, f"opt{tag}_step").fill_(float(st["step"]))


def _real_pool(data, device) -> tuple[Tensor, Tensor]:
    """The training images as uint8 on the device and their labels (an ImageSet or (x, y))."""
    if hasattr(data, "images"):
        x, y = data.images, data.labels
    else:
        x, y = data
        if x.dtype != torch.uint8:
            x = (x.clamp(0, 1) * 255).round().to(torch.uint8)
    return x.to(device), torch.as_tensor(y).long().to(device)


def train_acgan(state: ACGANState, data, steps: int, *, n_critic: int = 5, batch_size: int = 64,
                g_batch_factor: int = 2, lr: float = 2e-4, betas: tuple[float, float] = (0.0, 0.9),
                gp_weight: float = 10.0, aux_weight_d: float = 1.0, aux_weight_g: float = 0.1,
                seed: int = 0, history: list[dict] | None = None, log_every: int = 10,
                checkpoint_every: int = 0, save: Callable[[ACGANState, list[dict]], None] | None = None,
                stop_at: int | None = None, device=None, progress: bool = True) -> pd.DataFrame:
    """Train ``state.G`` and ``state.D`` from iteration ``state.step`` to ``steps`` (or ``stop_at``,
    to interrupt on purpose) on ``data`` (an ImageSet or ``(x, y)``; pixels in [0, 1] or uint8).

    ``history``: the rows of an earlier, interrupted run (extended in place). Every ``log_every``
    iterations one row of means: ``d_loss``, ``g_loss``, ``wasserstein`` (D(real) - D(fake), the
    critic's distance estimate), ``gp``, ``aux_acc_real``/``aux_acc_fake`` (the aux head's accuracy),
    ``lr``. ``save(state, history)`` runs every ``checkpoint_every`` iterations and at the end.
    Returns the history as a DataFrame; the networks are left in eval mode.
    """
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    device = pick_device(device)
    state.to(device)
    G, D = state.G, state.D
    x_all, y_all = _real_pool(data, device)
    if int(y_all.max()) >= G.num_classes:
        raise ValueError(f"data has labels up to {int(y_all.max())} but the generator has {G.num_classes} classes")
    opt_g, opt_d = state.optimizers(lr, betas)
    history = [] if history is None else history
    end = steps if stop_at is None else min(steps, stop_at)
    start = state.step
    sums: dict[str, float] = {}
    count = 0
    bar = tqdm(total=end - start, desc="AC-GAN", disable=not progress, mininterval=0.5, dynamic_ncols=True)
    G.train(), D.train()
    t0 = time.perf_counter()
    for it in range(start, end):
        torch.manual_seed(seed * 1_000_003 + it)
        cur = lr * (1 - it / steps)
        for opt in (opt_g, opt_d):
            for g in opt.param_groups:
                g["lr"] = cur
        for _ in range(n_critic):
            idx = torch.randint(len(y_all), (batch_size,), device=device)
            real = from_pixels(x_all[idx].float() / 255) + torch.rand(batch_size, 3, *x_all.shape[2:],
                                                                      device=device) / 128
            y_real = y_all[idx]
            y_fake = torch.randint(G.num_classes, (batch_size,), device=device)
            with torch.no_grad():
                fake = G(G.sample_z(batch_size, device=device), y_fake)
            d_real, aux_real = D(real)
            d_fake, _ = D(fake)
            gp = gradient_penalty(lambda v: D(v)[0], real, fake)
            aux_ce = F.cross_entropy(aux_real, y_real)
            d_loss = d_fake.mean() - d_real.mean() + gp_weight * gp + aux_weight_d * aux_ce
            opt_d.zero_grad(set_to_none=True)
            d_loss.backward()
            opt_d.step()
        n_g = g_batch_factor * batch_size
        y_g = torch.randint(G.num_classes, (n_g,), device=device)
        fake = G(G.sample_z(n_g, device=device), y_g)
        for p in D.parameters():
            p.requires_grad_(False)
        score, aux_fake = D(fake)
        g_loss = -score.mean() + aux_weight_g * F.cross_entropy(aux_fake, y_g)
        opt_g.zero_grad(set_to_none=True)
        g_loss.backward()
        opt_g.step()
        for p in D.parameters():
            p.requires_grad_(True)
        row = {"d_loss": d_loss.item(), "g_loss": g_loss.item(), "wasserstein": (d_real.mean() - d_fake.mean()).item(),
               "gp": gp.item(), "aux_acc_real": (aux_real.argmax(1) == y_real).float().mean().item(),
               "aux_acc_fake": (aux_fake.argmax(1) == y_g).float().mean().item()}
        for k, v in row.items():
            sums[k] = sums.get(k, 0.0) + v
        count += 1
        bar.update(1)
        done = it + 1
        if done % log_every == 0 or done == end:
            history.append({"step": done, **{k: v / count for k, v in sums.items()}, "lr": cur,
                            "seconds": time.perf_counter() - t0})
            bar.set_postfix({k: round(history[-1][k], 3) for k in ("d_loss", "g_loss", "wasserstein", "aux_acc_fake")})
            sums, count = {}, 0
        if save is not None and ((checkpoint_every and done % checkpoint_every == 0) or done == end):
            state.capture(opt_g, opt_d, done)
            save(state, history)
    bar.close()
    state.capture(opt_g, opt_d, end)
    G.eval(), D.eval()
    return pd.DataFrame(history)
