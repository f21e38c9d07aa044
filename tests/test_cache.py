"""lib.cache: an evaluation runs once per distinct input (models by weights, data by content,
attacks by parameters) and reads back the same thing it returned the first time."""
import pandas as pd
import pytest
import torch

from lib.attacks import attack_fn, with_own_labels
from lib.cache import cached, describe
from lib.models import build
from lib.store import Store

calls = []


def evaluate_fake(model, data, attack, *, n=10, progress=True):
    calls.append(1)
    x, y = data
    return pd.DataFrame({"acc": [float((model(x[:n]).argmax(1) == y[:n]).float().mean())], "n": [n]})


def report_fake(model, data):
    calls.append(1)
    return pd.DataFrame({"a": [1]}), pd.DataFrame({"passed": [True]})


def test_cached_recomputes_only_for_a_different_input(tmp_path):
    store, calls[:] = Store(tmp_path), []
    model = build("small_cnn", 4, seed=0, width=8).eval()  # eval: a forward pass leaves the weights as they are
    data = (torch.rand(12, 3, 32, 32), torch.randint(0, 4, (12,)))
    atk = attack_fn("pgd", eps=8 / 255, alpha=2 / 255, steps=3)
    first = cached("t", evaluate_fake, model, data, atk, n=10, store=store)
    again = cached("t", evaluate_fake, model, data, atk, n=10, progress=False, store=store)  # progress is not keyed
    assert len(calls) == 1 and first.equals(again)
    cached("t", evaluate_fake, model, data, attack_fn("pgd", eps=4 / 255, alpha=2 / 255, steps=3), store=store)
    assert len(calls) == 2  # another attack budget
    with torch.no_grad():
        next(model.parameters()).add_(1e-3)
    cached("t", evaluate_fake, model, data, atk, n=10, store=store)
    assert len(calls) == 3  # other weights
    cached("t", evaluate_fake, model, (data[0], (data[1] + 1) % 4), atk, n=10, store=store)
    assert len(calls) == 4  # other labels


def test_tuples_of_frames_round_trip_and_wrappers_are_keyed_by_their_attack(tmp_path):
    store, calls[:] = Store(tmp_path), []
    model = build("small_cnn", 4, seed=0, width=8).eval()  # eval: a forward pass leaves the weights as they are
    data = (torch.rand(4, 3, 32, 32), torch.randint(0, 4, (4,)))
    a = cached("r", report_fake, model, data, store=store)
    b = cached("r", report_fake, model, data, store=store)
    assert len(calls) == 1 and isinstance(a, tuple) and a[1]["passed"].item() and b[0].equals(a[0])
    own = describe(with_own_labels(attack_fn("fgsm", eps=0.1)))
    assert own["of"] == {"attack": "fgsm", "params": {"eps": 0.1}}
    with pytest.raises(TypeError, match="cannot key"):
        describe(object())


def test_frozen_dataclasses_are_keyed_by_their_fields_and_extra_code_counts(tmp_path):
    from dataclasses import dataclass

    from lib.backdoor import Trigger

    store, calls[:] = Store(tmp_path), []
    model = build("small_cnn", 4, seed=0, width=8).eval()
    data = (torch.rand(4, 3, 32, 32), torch.randint(0, 4, (4,)))
    assert describe(Trigger.emblem()) == describe(Trigger.emblem())
    assert describe(Trigger.emblem()) != describe(Trigger.emblem(0.25)) != describe(Trigger.badnets())
    cached("d", evaluate_fake, model, data, Trigger.emblem(), store=store)
    cached("d", evaluate_fake, model, data, Trigger.emblem(), store=store)
    assert len(calls) == 1
    cached("d", evaluate_fake, model, data, Trigger.badnets(), store=store)
    assert len(calls) == 2  # another trigger
    cached("d", evaluate_fake, model, data, Trigger.badnets(), store=store, code=("another version of a helper",))
    assert len(calls) == 3  # the extra code is part of the key

    @dataclass
    class Mutable:
        x: int = 0

    with pytest.raises(TypeError, match="cannot key"):
        describe(Mutable())  # its fields could change after keying
