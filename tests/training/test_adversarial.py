"""Domain-adversarial training: the gradient reversal, its schedule, the corpora it
separates, and a left-out corpus that takes part through its features, never its labels."""

import dataclasses

import numpy as np
import pytest
import torch

from ser_core.labels import RAVDESS_LABELS
from ser_core.model import SERModel
from ser_core.splits import corpus_transfer_folds
from ser_core.training.adversarial import Adversary, append_rows, domain_rows, ramp, reverse_gradient
from ser_core.training.config import TrainConfig
from ser_core.training.data import load_features
from ser_core.training.fold import train_fold
from tests.training.test_transfer import SIX, speakers
from tests.training.synth_features import feature_table, write_shards


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("corpora")
    a = write_shards(root / "a", feature_table(speakers=speakers("alpha", 8), seed=1))
    b = write_shards(root / "b", feature_table(speakers=speakers("beta", 6), emotions=SIX, seed=2))
    return load_features([a, b], RAVDESS_LABELS)


@pytest.fixture(scope="module")
def folds(data):
    return dict(corpus_transfer_folds(data.speaker_genders()))


def test_gradient_reversal_is_identity_forward_and_negated_backward():
    x = torch.randn(3, 5, requires_grad=True)
    out = reverse_gradient(x, 0.25)
    assert torch.equal(out, x)
    (grad,) = torch.autograd.grad((out * torch.arange(5.0)).sum(), x)
    assert torch.equal(grad, -0.25 * torch.arange(5.0).expand(3, 5))


def test_the_weight_ramps_in_from_zero():
    steps = [ramp(0.5, p) for p in np.linspace(0, 1, 11)]
    assert steps[0] == 0.0 and all(b > a for a, b in zip(steps, steps[1:]))
    assert 0.49 < steps[-1] < 0.5 and ramp(0.0, 0.7) == 0.0


def test_the_target_is_the_test_corpus_no_training_row_comes_from(data, folds):
    idx = {name: data.indices(getattr(folds[("alpha",)], name)) for name in ("train", "val", "test")}
    names, target = domain_rows(data.corpora, idx["train"], idx["test"])
    assert names == ["alpha", "beta"]
    assert len(target) and set(target) == set(idx["test"]) and {data.corpora[i] for i in target} == {"beta"}
    # joint training (both corpora train; test speakers from them too): corpora, no target
    every = np.arange(len(data.y))
    both = np.array([i for i in every if data.speakers[i] not in {"alpha:00", "beta:00"}])
    tested = np.setdiff1d(every, both)
    names, target = domain_rows(data.corpora, both, tested)
    assert names == ["alpha", "beta"] and len(target) == 0
    # one corpus, nothing left out: nothing to separate
    alpha = np.array([i for i in every if data.corpora[i] == "alpha"])
    with pytest.raises(ValueError, match="two corpora"):
        domain_rows(data.corpora, alpha[:-10], alpha[-10:])


def test_target_rows_join_the_batch_padded():
    x = torch.ones(2, 4, 3)
    lengths = torch.tensor([4, 2])
    rows = [torch.full((6, 3), 2.0), torch.full((1, 3), 3.0)]
    xx, ll = append_rows(x, lengths, rows)
    assert xx.shape == (4, 6, 3) and ll.tolist() == [4, 2, 6, 1]
    assert torch.equal(xx[:2, :4], x) and not xx[:2, 4:].any() and xx[3, 1:].abs().sum() == 0
    assert append_rows(x, lengths, [])[0] is x


def test_the_corpus_loss_trains_the_head_and_pushes_the_network_the_other_way():
    torch.manual_seed(0)
    adversary = Adversary.build(["a"] * 4 + ["b"] * 4, [torch.randn(5, 3) for _ in range(8)],
                                np.arange(4), np.arange(4, 8), 6, 0, np.random.default_rng(0))
    assert adversary.domain.tolist() == [0] * 4 + [1] * 4 and adversary.target_domain.tolist() == [1] * 4
    rows, dom = adversary.target_batch(3)
    assert len(rows) == 3 and dom.tolist() == [1, 1, 1]
    z = torch.randn(6, 6, requires_grad=True)
    d = torch.tensor([0, 0, 0, 1, 1, 1])
    adversary.weight = 0.5
    loss = adversary.loss(z, d)
    (g_rev,) = torch.autograd.grad(loss, z, retain_graph=True)
    plain = torch.nn.functional.cross_entropy(adversary.head.net(z), d)
    (g_plain,) = torch.autograd.grad(plain, z)
    assert torch.allclose(loss, plain) and torch.allclose(g_rev, -0.5 * g_plain)
    # a mixup-blended row counts lam of its corpus and 1 - lam of its partner's
    partner = torch.tensor([1, 1, 1, 1, 1, 1])
    mixed = adversary.loss(z, d, partner, 0.3)
    expected = 0.3 * plain + 0.7 * torch.nn.functional.cross_entropy(adversary.head.net(z), partner)
    assert torch.allclose(mixed, expected)


def fingerprint(result):
    return {k: v.clone() for k, v in result.model.state_dict().items()}, result.test_probs.copy()


# the corpus head reads what the classifier reads: H wide, or 2D for the linear pooled model
@pytest.mark.parametrize("arch, hidden", [("reslstm", 4), ("pooled", 4), ("pooled", 0)])
def test_a_left_out_corpus_adapts_through_its_features_never_its_labels(data, folds, arch, hidden):
    fold = folds[("alpha",)]
    cfg = TrainConfig(arch=arch, epochs=3, hidden=hidden, batch_size=16, mixup_alpha=0.4, crop_frames=6,
                      domain_adversarial=1.0)
    state, probs = fingerprint(train_fold(data, fold, cfg, seed=0, progress=False))
    # the left-out corpus's labels scrambled: the same training, the same predictions
    beta = np.array([c == "beta" for c in data.corpora])
    y = data.y.copy()
    y[beta] = np.random.default_rng(0).permutation(y[beta])
    assert (y != data.y).any()
    state2, probs2 = fingerprint(train_fold(dataclasses.replace(data, y=y), fold, cfg, seed=0, progress=False))
    assert all(torch.equal(state[k], state2[k]) for k in state) and np.array_equal(probs, probs2)
    # it changes the training, and the saved model is the plain network (no corpus head)
    plain_state, plain_probs = fingerprint(train_fold(data, fold, dataclasses.replace(cfg, domain_adversarial=0.0),
                                                      seed=0, progress=False))
    assert state.keys() == plain_state.keys() == SERModel(cfg.model_config(data.n_dims)).state_dict().keys()
    assert not np.allclose(probs, plain_probs)


def test_one_corpus_with_nothing_to_adapt_to_is_an_error(data):
    alpha = sorted({s for s, c in zip(data.speakers, data.corpora) if c == "alpha"})
    fold = dataclasses.replace(next(iter(corpus_transfer_folds(data.speaker_genders())))[1],
                               train=tuple(alpha[:5]), val=tuple(alpha[5:6]), test=tuple(alpha[6:]))
    with pytest.raises(ValueError, match="domain_adversarial needs two corpora"):
        train_fold(data, fold, TrainConfig(epochs=1, hidden=4, domain_adversarial=0.5), seed=0, progress=False)
    with pytest.raises(ValueError, match="domain_adversarial must be >= 0"):
        TrainConfig(domain_adversarial=-1)
