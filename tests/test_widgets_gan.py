"""The function behind notebook 07's explorer: latent optimisation from fixed codes, measured."""
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from lib.gan import AuxClassifier, ConditionalBatchNorm2d, Critic, Generator, to_pixels  # noqa: E402
from lib.gan import unrestricted_attack  # noqa: E402
from lib.metrics import binomial_interval  # noqa: E402
from lib.widgets.gan import latent_explorer, latent_panel  # noqa: E402

K, N, SHOW = 3, 12, 4
ATTACK = {"eps": 0.1, "lr": 2.0, "noise": 0.01, "z_bound": 3.0}  # a larger lr and box: a few steps suffice


@pytest.fixture(scope="module")
def nets():
    """An untrained generator whose classes differ (small random per-class BatchNorm shifts: larger
    ones make classes that 30 latent steps cannot cross), a linear classifier trained briefly on its
    samples, so that it is right at step 0 and the attack has something to undo, and an untrained
    critic's aux head."""
    torch.manual_seed(0)
    G = Generator(K, z_dim=8, width=8, size=8)
    for m in G.modules():
        if isinstance(m, ConditionalBatchNorm2d):
            nn.init.normal_(m.beta.weight, std=0.3)
    G.eval()
    y = torch.arange(150) % K
    with torch.no_grad():
        x = to_pixels(G(torch.randn(150, 8), y))
    clf = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, K))
    opt = torch.optim.Adam(clf.parameters(), lr=0.01)
    for _ in range(40):
        loss = F.cross_entropy(clf(x), y)
        opt.zero_grad(), loss.backward(), opt.step()
    return G, AuxClassifier(Critic(K, width=4)).eval(), clf.eval()


def _panel(nets, **kw):
    G, aux, clf = nets
    fig, stats = latent_panel(G, aux, clf, n=N, show=SHOW, classes=["a/x", "b/y", "c/z"], attack=ATTACK, **kw)
    plt.close(fig)
    return fig, stats


def test_zero_steps_shows_the_clean_samples_as_the_classifier_sees_them(nets):
    G, aux, clf = nets
    fig, s = _panel(nets, steps=0, pixel_eps=8 / 255, seed=3)
    y = torch.arange(N) % K
    z0 = torch.randn(N, 8, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        clean = to_pixels(G(z0, y))
        assert torch.equal(s["pred"], clf(clean).argmax(1)) and torch.equal(s["aux_pred"], aux(clean * 2 - 1).argmax(1))
    assert s["acc"] == s["clean_acc"] and s["aux_agree"] == s["clean_aux_agree"] and s["linf_max"] == 0
    assert len(fig.axes) == 2 * SHOW + 1  # two image rows and the curve


def test_numbers_match_the_attack_run_directly_and_the_pixel_term_stays_in_budget(nets):
    G, aux, clf = nets
    G.train()  # the panel runs the networks in eval mode and leaves their modes as they were
    _, s = _panel(nets, steps=4, pixel_eps=4 / 255, seed=1)
    assert G.training
    G.eval()
    y = torch.arange(N) % K
    z0 = torch.randn(N, 8, generator=torch.Generator().manual_seed(1))
    r = unrestricted_attack(G, aux, clf, y, 4, z0=z0, seed=1, **{**ATTACK, "eps": 2 * 4 / 255})
    k = int((r.pred == y).sum())
    assert s["acc"] == k / N and s["acc_interval"] == binomial_interval(k, N)
    assert torch.equal(s["pred"], r.pred) and torch.equal(s["aux_pred"], r.aux_pred)
    assert s["success"] == pytest.approx(r.success.float().mean().item())
    assert s["clean_acc"] == pytest.approx(r.trace["acc"].iloc[0])  # the attack's own step-0 accuracy
    per = (r.images - r.samples).abs().flatten(1).amax(1) * 255
    assert s["linf_max"] == pytest.approx(float(per.max())) and 0 < s["linf_max"] <= 4 + 1e-3
    _, s = _panel(nets, steps=4, pixel_eps=16 / 255, seed=1)
    assert 4 < s["linf_max"] <= 16 + 1e-3


def test_no_pixel_term_is_exactly_zero_and_more_steps_lower_accuracy(nets):
    _, s0 = _panel(nets, steps=0, pixel_eps=0.0, seed=0)
    accs = []
    for steps in (3, 20):
        _, s = _panel(nets, steps=steps, pixel_eps=0.0, seed=0)
        assert s["linf_max"] == 0
        accs.append(s["acc"])
    assert s0["acc"] >= 0.6  # not trivially true: the classifier is mostly right on the clean samples...
    assert s0["acc"] >= accs[0] >= accs[1] and accs[1] <= s0["acc"] - 0.3  # ...and the latent alone undoes it


def test_explorer_has_only_its_sliders_and_redraws(nets, capsys):
    import ipywidgets as W

    G, aux, clf = nets
    box = latent_explorer(G, aux, clf, max_steps=5, steps=2, n=6, show=3, attack=ATTACK)
    controls = box.children[0]
    sliders = [c for c in controls.children if not isinstance(c, W.Output)]
    assert set(controls.kwargs) == {"steps", "pixel_eps255"}
    assert all(not c.continuous_update and c.style.description_width == "initial" for c in sliders)
    steps = next(c for c in sliders if isinstance(c, W.IntSlider))
    eps = next(c for c in sliders if isinstance(c, W.FloatSlider))
    assert (steps.value, steps.min, steps.max) == (2, 0, 5)
    assert eps.value == pytest.approx(ATTACK["eps"] / 2 * 255) and (eps.min, eps.max) == (0, 16)
    capsys.readouterr()
    controls.f(steps=1, pixel_eps255=3.0)
    out = capsys.readouterr().out
    assert "after 1 latent steps" in out and "accuracy" in out and "n = 6 codes" in out
    plt.close("all")


def test_explorer_builds_no_widgets_in_a_headless_run(nets, capsys, monkeypatch):
    from lib import notebook_run
    from lib.stall import HEADLESS_ENV

    G, aux, clf = nets
    monkeypatch.delenv(HEADLESS_ENV, raising=False)
    made = _widgets_made()
    with notebook_run.headless():
        assert latent_explorer(G, aux, clf, max_steps=5, n=6) is None
    assert _widgets_made() == made  # not one control made: each would open a comm
    assert "open this notebook in JupyterLab" in capsys.readouterr().out
    plt.close("all")


def _widgets_made() -> int:
    """How many ipywidgets exist in this process (a headless explorer must make none)."""
    from ipywidgets.widgets import widget

    return len(widget._instances)
