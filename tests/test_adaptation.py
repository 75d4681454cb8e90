"""AdaBN (ser_core.adaptation): a copy of the model whose BatchNorm statistics are the target's."""

import numpy as np
import pytest
import torch

from ser_core.adaptation import adapt_batchnorm
from ser_core.batching import predict_logits
from ser_core.model import ModelConfig, SERModel


def _model(mask_padding: bool = True) -> SERModel:
    torch.manual_seed(0)
    model = SERModel(ModelConfig(n_dims=6, hidden=8, n_classes=3, mask_padding=mask_padding))
    model.eval()
    return model


def _target(n: int = 20, shift: float = 3.0, scale: float = 2.0, seed: int = 1) -> list[torch.Tensor]:
    rng = np.random.default_rng(seed)
    return [torch.from_numpy((shift + scale * rng.standard_normal((int(rng.integers(5, 30)), 6))).astype(np.float32))
            for _ in range(n)]


def test_each_batchnorm_takes_the_exact_statistics_of_its_inputs_on_the_target():
    model, target = _model(), _target()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    adapted = adapt_batchnorm(model, target, batch_size=7)
    # the model given is untouched, weights of the copy too; only running statistics moved
    after = adapted.state_dict()
    assert all(torch.equal(before[k], model.state_dict()[k]) for k in before)
    for k, v in before.items():
        if "running_" in k:
            assert not torch.allclose(v, after[k])
        elif "num_batches" not in k:
            assert torch.equal(v, after[k]), k
    # bn_in's input is the residual block's sum on the valid frames: x + LSTM1(x)
    frames = torch.cat([x + model.lstm1(x.unsqueeze(0))[0][0] for x in target])
    np.testing.assert_allclose(adapted.bn_in.running_mean, frames.mean(0).detach(), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(adapted.bn_in.running_var, frames.var(0).detach(), rtol=1e-4, atol=1e-5)
    # bn_out's input is the attention context computed with bn_in already adapted
    hook = {}
    handle = adapted.bn_out.register_forward_pre_hook(lambda m, a: hook.setdefault("x", []).append(a[0]))
    predict_logits(adapted, target, batch_size=1)
    handle.remove()
    context = torch.cat(hook["x"])
    np.testing.assert_allclose(adapted.bn_out.running_mean, context.mean(0), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(adapted.bn_out.running_var, context.var(0), rtol=1e-4, atol=1e-5)


def test_adapted_statistics_do_not_depend_on_batching_or_order():
    model, target = _model(), _target()
    a = adapt_batchnorm(model, target, batch_size=3).state_dict()
    b = adapt_batchnorm(model, target[::-1], batch_size=64).state_dict()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-6)


def test_adaptation_centres_a_shifted_target_like_the_source():
    """A target that is the source shifted and scaled gives, once adapted, the logits the
    source gives unadapted (BatchNorm after the residual block absorbs the shift exactly
    when the first LSTM is silenced)."""
    model = _model()
    with torch.no_grad():
        for p in model.lstm1.parameters():
            p.zero_()  # residual block = identity: bn_in sees the input itself
    source = _target(shift=0.0, scale=1.0)
    on_source = adapt_batchnorm(model, source)
    shifted = [3.0 + 2.0 * x for x in source]
    on_shifted = adapt_batchnorm(model, shifted)
    torch.testing.assert_close(predict_logits(on_shifted, shifted), predict_logits(on_source, source),
                               rtol=1e-4, atol=1e-4)
    assert not torch.allclose(predict_logits(on_source, shifted), predict_logits(on_source, source), atol=1e-2)


@pytest.mark.parametrize("mask_padding", [True, False])
def test_adaptation_runs_for_either_padding_rule_and_refuses_no_target(mask_padding):
    adapted = adapt_batchnorm(_model(mask_padding), _target())
    assert not adapted.training
    with pytest.raises(ValueError, match="none"):
        adapt_batchnorm(_model(mask_padding), [])
