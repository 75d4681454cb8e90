import numpy as np
import pytest
import torch

from ser_core.model import ModelConfig, SERModel, count_parameters, pooled_statistics


@pytest.mark.parametrize("arch, hidden, expected", [
    ("reslstm", 32, 27_988), ("reslstm", 64, 46_772), ("reslstm", 128, 108_916),
    ("lstm", 32, 10_600), ("lstm", 64, 29_384), ("lstm", 128, 91_528),
    # pooled: Linear(92 -> 64) 5,952 + BatchNorm 128 + Linear(64 -> 8) 520; linear: 184 + 744
    ("pooled", 64, 6_600), ("pooled", 0, 928),
])
def test_parameter_counts_match_the_paper(arch, hidden, expected):
    model = SERModel(ModelConfig(n_dims=46, n_classes=8, hidden=hidden, arch=arch))
    assert count_parameters(model) == expected


def test_published_initialisation():
    torch.manual_seed(0)
    model = SERModel(ModelConfig(n_dims=10, n_classes=4, hidden=12))
    for lstm in (model.lstm1, model.lstm2):
        h = lstm.hidden_size
        for name in ("bias_ih_l0", "bias_hh_l0"):
            bias = getattr(lstm, name)
            assert torch.all(bias[h:2 * h] == 1.0)
            assert torch.all(bias[:h] == 0) and torch.all(bias[2 * h:] == 0)
        w_hh = lstm.weight_hh_l0  # (4h, h), orthogonal columns
        assert torch.allclose(w_hh.T @ w_hh, torch.eye(h), atol=1e-5)
    assert torch.all(model.classifier.bias == 0)
    bound = (6 / (12 + 4)) ** 0.5  # Xavier-uniform limit
    assert model.classifier.weight.abs().max() <= bound


def _batch(lengths, n_dims=6, extra=0, seed=0):
    """Zero-padded batch of random utterances; ``extra`` adds trailing zero frames."""
    g = torch.Generator().manual_seed(seed)
    xs = [torch.randn(t, n_dims, generator=g) for t in lengths]
    x = torch.zeros(len(xs), max(lengths) + extra, n_dims)
    for i, u in enumerate(xs):
        x[i, :len(u)] = u
    return x, torch.tensor(lengths)


def _model(arch="reslstm", mask=True, dropout=0.0, hidden=5):
    torch.manual_seed(0)
    model = SERModel(ModelConfig(n_dims=6, n_classes=3, hidden=hidden, arch=arch, dropout=dropout,
                                 mask_padding=mask))
    model.train()
    for seed in range(3):  # make the BatchNorm running statistics non-trivial
        model(*_batch([7, 4, 9], seed=seed + 10))
    return model.eval()


@pytest.mark.parametrize("arch, hidden", [("reslstm", 5), ("lstm", 5), ("pooled", 5), ("pooled", 0)])
def test_padding_does_not_change_outputs_in_eval_mode(arch, hidden):
    model = _model(arch, hidden=hidden)
    x, lengths = _batch([5, 3, 8])
    with torch.no_grad():
        batched = model(x, lengths)
        padded_more = model(*_batch([5, 3, 8], extra=11))
        alone = torch.cat([model(x[i:i + 1, :lengths[i]], lengths[i:i + 1]) for i in range(3)])
        with_longer = model(*_batch([5, 3, 8, 30]))[:3]  # a longer utterance joins the batch
    for other in (padded_more, alone):
        torch.testing.assert_close(batched, other, rtol=1e-5, atol=1e-6)
    # The fourth utterance draws new random frames, but the first three are the same.
    torch.testing.assert_close(with_longer, batched, rtol=1e-5, atol=1e-6)


def test_unmasked_mode_lets_padding_in():
    model = _model(mask=False)
    with torch.no_grad():
        assert not torch.allclose(model(*_batch([5, 3, 8])), model(*_batch([5, 3, 8], extra=11)))


def _train_step_stats(mask, extra):
    model = _model(mask=mask).train()
    logits = model(*_batch([5, 3, 8], extra=extra))
    return logits.detach(), model.bn_in.running_mean.clone(), model.bn_in.running_var.clone()


def test_masked_batchnorm_statistics_ignore_padding():
    a, mean_a, var_a = _train_step_stats(mask=True, extra=0)
    b, mean_b, var_b = _train_step_stats(mask=True, extra=13)
    torch.testing.assert_close(mean_a, mean_b)
    torch.testing.assert_close(var_a, var_b)
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)  # dropout 0: training outputs too
    _, mean_c, _ = _train_step_stats(mask=False, extra=0)
    _, mean_d, _ = _train_step_stats(mask=False, extra=13)
    assert not torch.allclose(mean_c, mean_d)  # the authors' BatchNorm counts the padding


def test_config_round_trip_and_validation():
    config = ModelConfig(n_dims=46, hidden=32, arch="lstm", dropout=0.2, mask_padding=False)
    assert ModelConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ValueError, match="arch"):
        ModelConfig(arch="gru")
    with pytest.raises(ValueError, match="dropout"):
        ModelConfig(dropout=1.0)
    assert ModelConfig(arch="pooled", hidden=0).name == "Pooled-h0"  # linear on the statistics
    with pytest.raises(ValueError, match="hidden"):
        ModelConfig(arch="reslstm", hidden=0)  # only the pooled model can do without


def test_pooled_statistics_are_each_utterances_own_mean_and_std():
    x, lengths = _batch([5, 1, 8], extra=3)
    mask = torch.arange(x.shape[1]).unsqueeze(0) < lengths.unsqueeze(1)
    stats = pooled_statistics(x, mask)
    for i, t in enumerate(lengths.tolist()):
        frames = x[i, :t].double().numpy()
        expected = np.concatenate([frames.mean(0), np.maximum(frames.std(0), 1e-5)])
        np.testing.assert_allclose(stats[i].numpy(), expected, rtol=1e-5, atol=1e-6)
    # the pooled model reads nothing but these statistics: frames reordered, same logits
    model = _model("pooled")
    order = torch.randperm(8, generator=torch.Generator().manual_seed(1))
    shuffled = x.clone()
    shuffled[2, :8] = x[2, order]
    with torch.no_grad():
        torch.testing.assert_close(model(x, lengths), model(shuffled, lengths))


def test_eval_batchnorm_matches_valid_frames_only_exactly():
    # Eval mode applies the running-statistics affine map everywhere and zeroes the padding
    # (no boolean indexing, so the model exports to ONNX); bit for bit what normalising
    # the valid frames alone gives.
    model = _model()
    x, lengths = _batch([5, 3, 8], extra=4)
    mask = torch.arange(x.shape[1])[None] < lengths[:, None]
    with torch.no_grad():
        got = model._residual_block(x, mask)
        res = x + model.lstm1(x)[0]
        expected = torch.zeros_like(res)
        expected[mask] = model.bn_in(res[mask])
    assert torch.equal(got, expected)
