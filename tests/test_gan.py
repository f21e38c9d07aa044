"""lib.gan: gradient penalty, conditional BatchNorm, generator range, the latent attack's bound and
success definition, resumable training, and the clear errors."""
import pytest
import torch
import torch.nn as nn

from lib.gan import (ACGANState, AuxClassifier, ConditionalBatchNorm2d, Critic, GeneratedMixLoss, Generator,
                     closest_wrong_class_loss, gradient_penalty, sample_quality, success, train_acgan,
                     unrestricted_attack)
from lib.store import Store


def _tiny(num_classes=3, size=8, seed=0):
    torch.manual_seed(seed)
    return Generator(num_classes, z_dim=8, width=8, size=size), Critic(num_classes, width=8)


def test_gradient_penalty_zero_for_unit_norm_gradients_and_exact_otherwise():
    w = torch.randn(3, 4, 4)
    unit = lambda x: (x * (w / w.norm())).flatten(1).sum(1)  # linear critic: gradient = w / ||w||, norm 1
    real, fake = torch.rand(5, 3, 4, 4), torch.rand(5, 3, 4, 4)
    assert gradient_penalty(unit, real, fake).item() == pytest.approx(0.0, abs=1e-10)
    double = lambda x: 2 * unit(x)  # norm-2 gradients: (2 - 1)^2 = 1
    assert gradient_penalty(double, real, fake).item() == pytest.approx(1.0, abs=1e-6)
    # a quadratic critic: the penalty is evaluated at the interpolate alpha real + (1 - alpha) fake
    quad = lambda x: 0.5 * (x ** 2).flatten(1).sum(1)  # gradient = x_hat
    alpha = torch.rand(5)
    x_hat = alpha.view(-1, 1, 1, 1) * real + (1 - alpha.view(-1, 1, 1, 1)) * fake
    expected = ((x_hat.flatten(1).norm(dim=1) - 1) ** 2).mean()
    assert gradient_penalty(quad, real, fake, alpha=alpha).item() == pytest.approx(expected.item(), rel=1e-5)


def test_conditional_bn_uses_each_class_parameters():
    cbn = ConditionalBatchNorm2d(2, 3)
    with torch.no_grad():
        cbn.gamma.weight.copy_(torch.tensor([[1.0, 1.0], [2.0, 3.0], [0.0, 0.0]]))
        cbn.beta.weight.copy_(torch.tensor([[0.0, 0.0], [5.0, -1.0], [7.0, 8.0]]))
    cbn.eval()  # running stats 0 / 1: the BN part is (x - 0) / sqrt(1 + eps)
    x = torch.randn(3, 2, 4, 4)
    out = cbn(x, torch.tensor([0, 1, 2]))
    xn = x / (1 + cbn.bn.eps) ** 0.5
    assert torch.allclose(out[0], xn[0], atol=1e-6)
    assert torch.allclose(out[1, 0], 2 * xn[1, 0] + 5, atol=1e-5) and torch.allclose(out[1, 1], 3 * xn[1, 1] - 1,
                                                                                     atol=1e-5)
    assert torch.allclose(out[2], torch.tensor([7.0, 8.0]).view(2, 1, 1).expand(2, 4, 4))
    # the same input under another label gives another output, and gradients reach only that class's row
    out = cbn(x[:1], torch.tensor([1]))
    out.sum().backward()
    assert cbn.gamma.weight.grad[[0, 2]].abs().sum() == 0 and cbn.gamma.weight.grad[1].abs().sum() > 0


def test_generator_output_range_shape_classes_and_label_errors():
    G, D = _tiny(num_classes=4, size=16)
    y = torch.tensor([0, 1, 2, 3, 0])
    x = G(torch.randn(5, 8) * 10, y)
    assert x.shape == (5, 3, 16, 16) and x.min() >= -1 and x.max() <= 1
    score, aux = D(x)
    assert score.shape == (5,) and aux.shape == (5, 4)
    G.eval()
    for m in G.modules():  # at initialisation every class has gamma 1, beta 0: give them their own
        if isinstance(m, ConditionalBatchNorm2d):
            nn.init.normal_(m.beta.weight)
    z = torch.randn(1, 8)
    assert not torch.allclose(G(z, torch.tensor([0])), G(z, torch.tensor([3])))  # the label matters
    with pytest.raises(ValueError, match=r"0\.\.3"):
        G(torch.randn(1, 8), torch.tensor([4]))
    with pytest.raises(ValueError, match="size"):
        Generator(2, size=20)


class _Fixed(nn.Module):
    """A 'classifier' with fixed logits per image, from the mean of channel 0 (for hand-made cases)."""

    def __init__(self, num_classes):
        super().__init__()
        self.w = nn.Parameter(torch.linspace(-3, 3, num_classes))

    def forward(self, x):
        return -(x[:, :1].mean((1, 2, 3))[:, None] * 6 - 3 - self.w) ** 2


def test_closest_wrong_class_loss_and_success_definition():
    logits = torch.tensor([[3.0, 1.0, 0.0], [0.0, 2.0, 1.0]])
    y = torch.tensor([0, 2])
    logp = torch.log_softmax(logits, 1)
    assert torch.allclose(closest_wrong_class_loss(logits, y), torch.stack([-logp[0, 1], -logp[1, 1]]))
    pred, aux_pred, y = torch.tensor([1, 0, 2, 1]), torch.tensor([0, 1, 2, 1]), torch.tensor([0, 0, 2, 2])
    # wrong and aux agrees -> success; right -> no; wrong but aux disagrees -> no
    assert success(pred, aux_pred, y).tolist() == [True, False, False, False]


def test_unrestricted_attack_keeps_z_in_its_bound_and_reports_success_consistently():
    G, D = _tiny(num_classes=3)
    G.eval()
    aux, clf = AuxClassifier(D).eval(), _Fixed(3)
    y = torch.tensor([0, 1, 2, 0, 1, 2])
    z0 = torch.randn(6, 8)
    r = unrestricted_attack(G, aux, clf, y, 25, z0=z0, z_bound=0.3, lr=5.0, noise=1.0, seed=0)
    assert (r.z - z0).abs().max() <= 0.3 + 1e-6 and (r.z - z0).abs().max() > 0.1  # it moved, within the box
    assert torch.equal(r.z0, z0)
    assert r.images.min() >= 0 and r.images.max() <= 1 and r.images.shape == (6, 3, 8, 8)
    with torch.no_grad():  # the reported labels are the networks' on the returned images
        assert torch.equal(r.pred, clf(r.images).argmax(1))
        assert torch.equal(r.aux_pred, aux(r.images * 2 - 1).argmax(1))
    assert torch.equal(r.success, (r.pred != y) & (r.aux_pred == y))
    assert list(r.trace["step"]) == list(range(26)) and r.trace["success"].iloc[-1] == r.success.float().mean().item()
    assert all(not p.requires_grad or p.grad is None for p in [*G.parameters(), *clf.parameters()])
    assert not G.training and not aux.training
    for bad in (0, -1):
        with pytest.raises(ValueError, match="steps"):
            unrestricted_attack(G, aux, clf, y, bad)
    with pytest.raises(ValueError, match="class indices"):
        unrestricted_attack(G, aux, clf, torch.tensor([3]), 2)


def test_unrestricted_attack_fools_a_weak_classifier():
    # a classifier that reads only channel 0's mean is easily pushed to another class by the latent
    G, D = _tiny(num_classes=3)
    G.eval()
    aux, clf = AuxClassifier(D).eval(), _Fixed(3)
    y = torch.zeros(8, dtype=torch.long)
    r = unrestricted_attack(G, aux, clf, y, 40, eps=0.5, lambda_aux=0.0, lr=1.0, z_bound=3.0, seed=1)
    assert r.trace["acc"].iloc[-1] <= r.trace["acc"].iloc[0]
    assert (r.pred != y).float().mean() >= 0.5


def _data(n=24, classes=3, size=8):
    g = torch.Generator().manual_seed(0)
    return torch.randint(0, 256, (n, 3, size, size), generator=g, dtype=torch.uint8), torch.arange(n) % classes


def test_checkpoint_round_trips_and_resume_equals_uninterrupted(tmp_path):
    data = _data()
    full = ACGANState(*_tiny())
    h_full = train_acgan(full, data, 4, n_critic=2, batch_size=4, log_every=1, progress=False)
    store = Store(tmp_path)
    part = ACGANState(*_tiny())
    saved = []
    train_acgan(part, data, 4, n_critic=2, batch_size=4, log_every=1, stop_at=2, checkpoint_every=1,
                save=lambda s, h: saved.append(store.save_model("ckpt", {"k": 1}, s, {"history": h})), progress=False)
    assert len(saved) == 2 and part.step == 2
    resumed = ACGANState(*_tiny(seed=5))  # other initial weights: everything must come from the file
    history = store.load_model("ckpt", {"k": 1}, resumed)["history"]
    assert resumed.step == 2 and len(history) == 2
    for a, b in zip(part.state_dict().values(), resumed.state_dict().values()):
        assert torch.equal(a, b)
    h_res = train_acgan(resumed, data, 4, n_critic=2, batch_size=4, log_every=1, history=history, progress=False)
    assert resumed.step == 4 and list(h_res["step"]) == [1, 2, 3, 4]
    for (k, a), b in zip(full.state_dict().items(), resumed.state_dict().values()):
        assert torch.allclose(a, b, atol=1e-6), k
    assert h_res["g_loss"].tolist() == pytest.approx(h_full["g_loss"].tolist(), rel=1e-5)
    with pytest.raises(ValueError, match="steps"):
        train_acgan(ACGANState(*_tiny()), data, 0)
    with pytest.raises(ValueError, match="classes"):
        train_acgan(ACGANState(*_tiny(num_classes=2)), data, 1)


def test_sample_quality_and_mix_loss():
    G, D = _tiny()
    clf = _Fixed(3)
    q = sample_quality(G, AuxClassifier(D), clf, 4)
    assert list(q["class"]) == ["0", "1", "2", "all"] and q["n"].tolist() == [4, 4, 4, 12]
    assert ((q["clf_low"] <= q["clf_acc"]) & (q["clf_acc"] <= q["clf_high"])).all()
    # the mixing loss replaces half of the batch with images made for those labels and weights them by lambda
    made = []

    def make(model, y):
        made.append(y.clone())
        return torch.zeros(len(y), 3, 8, 8)

    loss_fn = GeneratedMixLoss(make, adv_fraction=0.5, adv_weight=0.3)
    x, y = torch.rand(8, 3, 8, 8) + 1, torch.tensor([0, 1, 2, 0, 1, 2, 0, 1])
    loss, logits = loss_fn(clf, x, y)
    m = loss_fn.last["mask"]
    assert m.sum() == 4 and torch.equal(made[0], y[m]) and (loss_fn.last["x"][m] == 0).all()
    ce = torch.nn.functional.cross_entropy(clf(loss_fn.last["x"]), y, reduction="none")
    assert loss.item() == pytest.approx(((ce[~m]).sum() + 0.3 * ce[m].sum()).item() / (4 + 0.3 * 4), rel=1e-5)
