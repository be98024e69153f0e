"""All Siamese methods: one step, gradients, EMA teachers, reproducibility, registry errors."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from multissl.errors import ConfigError
from multissl.methods import build_method, get_method_class, list_methods, register_method
from multissl.methods.base import SSLMethod

METHODS = ["simclr", "moco", "byol", "simsiam", "barlowtwins", "vicreg", "vibcreg"]
EMA_METHODS = ["moco", "byol"]
EMBED = 16
# Small heads keep the test fast; the defaults are exercised by test_default_build.
SMALL = {"proj_hidden_dim": 32, "proj_dim": 16}
SMALL_EXTRA = {"moco": {"pred_hidden_dim": 32}, "byol": {"pred_hidden_dim": 32}, "simsiam": {"pred_hidden_dim": 8},
               "vibcreg": {"iternorm_groups": 4}}


def tiny_encoder() -> nn.Module:
    return nn.Sequential(nn.Linear(10, 32), nn.ReLU(), nn.Linear(32, EMBED))


def make(name: str, seed: int = 0) -> SSLMethod:
    torch.manual_seed(seed)
    return build_method(name, tiny_encoder(), EMBED, **SMALL, **SMALL_EXTRA.get(name, {}))


def views(seed: int = 1, batch: int = 12) -> list:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, 10, generator=g)
    return [x + 0.1 * torch.randn(batch, 10, generator=g), x + 0.1 * torch.randn(batch, 10, generator=g)]


def train_step(method: SSLMethod, seed: int = 1) -> dict:
    cls = type(method)
    trainable = [p for p in method.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(trainable, lr=cls.defaults["lr"], weight_decay=cls.defaults["weight_decay"])
    out = method(views(seed))
    opt.zero_grad()
    out["loss"].backward()
    opt.step()
    method.on_train_step_end(0.0)
    return out


def test_registry_lists_the_siamese_methods() -> None:
    assert set(METHODS) <= set(list_methods())
    for name in METHODS:
        cls = get_method_class(name)
        assert cls.name == name and cls.n_views == 2
        assert {"optimizer", "lr", "weight_decay"} <= set(cls.defaults)


@pytest.mark.parametrize("name", METHODS)
def test_default_build(name: str) -> None:
    method = build_method(name, tiny_encoder(), EMBED)
    assert method.hparams() == get_method_class(name).hparam_defaults
    json.dumps(method.hparams())  # goes into config.json
    out = method(views())
    assert out["loss"].ndim == 0 and torch.isfinite(out["loss"])


@pytest.mark.parametrize("name", METHODS)
def test_one_step_is_finite_and_reaches_every_trainable_parameter(name: str) -> None:
    method = make(name)
    out = method(views())
    assert out["loss"].ndim == 0 and torch.isfinite(out["loss"])
    assert out["loss"].dtype == torch.float32
    for key, value in out.items():
        assert isinstance(value, torch.Tensor) and value.ndim == 0, key
        assert key == "loss" or not value.requires_grad, key  # diagnostics are detached
    assert 0.0 < out["std"].item() < 2.0
    out["loss"].backward()
    # DDP-friendly: every parameter that requires grad is used in forward and gets a gradient
    for pname, p in method.named_parameters():
        if p.requires_grad:
            assert p.grad is not None, pname
            assert torch.isfinite(p.grad).all(), pname
    assert any(p.grad.abs().sum() > 0 for p in method.encoder.parameters())
    # a full optimiser step leaves everything finite
    method.zero_grad()
    train_step(method)
    assert all(torch.isfinite(p).all() for p in method.parameters())


@pytest.mark.parametrize("name", EMA_METHODS)
def test_ema_teacher_moves_with_momentum_and_gets_no_grads(name: str) -> None:
    method = make(name)
    teacher = list(method.teacher_encoder.parameters()) + list(method.teacher_projector.parameters())
    student = list(method.encoder.parameters()) + list(method.projector.parameters())
    assert teacher and all(not p.requires_grad for p in teacher)
    assert all(torch.equal(t, s) for t, s in zip(teacher, student))  # starts as a copy
    before = [t.clone() for t in teacher]

    train_step(method)  # calls on_train_step_end(0.0): momentum = base
    m = method.hparams()["momentum"]
    assert all(t.grad is None for t in teacher)
    for old, t, s in zip(before, teacher, student):
        assert torch.allclose(t, m * old + (1 - m) * s, atol=1e-6)
    assert any(not torch.equal(old, t) for old, t in zip(before, teacher))

    # at the end of training the cosine schedule reaches momentum 1: the teacher freezes
    frozen = [t.clone() for t in teacher]
    out = method(views(seed=3))
    out["loss"].backward()
    method.on_train_step_end(1.0)
    assert method.current_momentum == pytest.approx(1.0)
    assert all(torch.equal(a, b) for a, b in zip(frozen, teacher))


@pytest.mark.parametrize("name", METHODS)
def test_seed_reproduces_exactly(name: str) -> None:
    runs = []
    for _ in range(2):
        method = make(name, seed=7)
        losses = [train_step(method, seed=s)["loss"].item() for s in (1, 2)]
        runs.append((losses, [p.detach().clone() for p in method.parameters()]))
    assert runs[0][0] == runs[1][0]
    assert all(torch.equal(a, b) for a, b in zip(runs[0][1], runs[1][1]))


@pytest.mark.parametrize("name", METHODS)
def test_float32_loss_under_autocast(name: str) -> None:
    method = make(name)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = method(views())
    assert out["loss"].dtype == torch.float32 and torch.isfinite(out["loss"])


def test_std_diagnostic_detects_collapse() -> None:
    from multissl.methods.siamese import embedding_std

    assert embedding_std(torch.ones(8, 4)).item() == pytest.approx(0.0, abs=1e-6)
    spread = torch.nn.functional.normalize(torch.randn(4096, 8), dim=1)
    assert embedding_std(spread).item() == pytest.approx(1.0, abs=0.05)


def test_unknown_method_lists_the_available_ones() -> None:
    with pytest.raises(ConfigError, match="unknown method 'simclrr'; available: .*simclr"):
        build_method("simclrr", tiny_encoder(), EMBED)


@pytest.mark.parametrize(
    "name, hparams, match",
    [
        ("simclr", {"temprature": 0.1}, "unknown hyperparameter.*'temprature'.*valid: .*temperature"),
        ("simclr", {"lr": 0.1}, "unknown hyperparameter.*'lr'"),
        ("simclr", {"temperature": 0.0}, "'temperature' must be > 0"),
        ("simclr", {"proj_dim": 0}, "'proj_dim' must be >= 1"),
        ("simclr", {"proj_dim": 12.5}, "'proj_dim' must be an integer"),
        ("vicreg", {"cov_weight": "high"}, "'cov_weight' must be a finite number"),
        ("vicreg", {"var_weight": -1.0}, "'var_weight' must be >= 0"),
        ("moco", {"momentum": 1.5}, r"'momentum' must be in \[0, 1\]"),
        ("byol", {"final_momentum": True}, "'final_momentum' must be a finite number"),
        ("barlowtwins", {"gather_distributed": 1}, "'gather_distributed' must be a boolean"),
        ("vibcreg", {"proj_dim": 100}, "iternorm_groups .* must divide proj_dim"),
    ],
)
def test_invalid_hyperparameters(name: str, hparams: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        build_method(name, tiny_encoder(), EMBED, **hparams)


def test_hparams_override_and_int_to_float() -> None:
    method = build_method("vicreg", tiny_encoder(), EMBED, cov_weight=2, proj_dim=np.int64(64))
    assert method.hparams()["cov_weight"] == 2.0 and isinstance(method.hparams()["cov_weight"], float)
    assert type(method.hparams()["proj_dim"]) is int  # JSON-serialisable
    assert method.projector.out_dim == 64


def test_wrong_embed_dim_is_a_clear_error() -> None:
    method = build_method("simclr", tiny_encoder(), EMBED + 1)
    with pytest.raises(ConfigError, match=r"embed_dim=17.*got \(12, 16\)"):
        method(views())
    with pytest.raises(ConfigError, match="embed_dim must be a positive integer"):
        build_method("simclr", tiny_encoder(), 0)


def test_wrong_number_of_views() -> None:
    method = make("simclr")
    with pytest.raises(ValueError, match="needs a list of 2 views, got 3 views"):
        method(views() + views()[:1])


def test_register_method(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("multissl.methods._REGISTERED", {})  # keep the global registry clean

    class Custom(SSLMethod):
        name = "custom-test"

        def forward(self, views):
            return {"loss": self.encoder(views[0]).sum()}

    register_method("custom-test", Custom)
    assert "custom-test" in list_methods()
    assert isinstance(build_method("custom-test", tiny_encoder(), EMBED), Custom)
    with pytest.raises(TypeError):
        register_method("bad", object)  # type: ignore[arg-type]
