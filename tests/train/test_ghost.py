"""Ghost clipping (genzoo.train.ghost) against brute force: each example's gradient by its own backward pass."""

import pytest
import torch
from torch import nn

from genzoo.core.errors import GenzooError
from genzoo.train.ghost import LinearGhost, linear_only


def brute_force(net, loss_of_rows, x):
    """Per-example gradients (B x P) of the batch-mean loss, one backward pass per example, 1/B as the hooks see it."""
    B = x.shape[0]
    rows = []
    for i in range(B):
        net.zero_grad()
        (loss_of_rows(net, x[i : i + 1]).sum() / B).backward()
        rows.append(torch.cat([p.grad.reshape(-1) for p in net.parameters() if p.requires_grad]))
    net.zero_grad()
    return torch.stack(rows)


def ghost(net, loss_of_rows, x):
    hooks = LinearGhost([net])
    loss = loss_of_rows(net, x).mean()
    loss.backward()
    sq, sums = hooks.per_example(x.shape[0])
    hooks.remove()
    return sq, sums


def mlp_loss(net, x):
    return net(x).pow(2).sum(1)


def twice_loss(net, x):  # the same layers applied twice: several uses per layer
    return (net(x) + net(x * 0.5)).pow(2).sum(1)


def sequence_loss(net, x):  # 3-D input: a length-3 sequence per example
    return net(x.view(x.shape[0], 3, -1)).pow(2).sum((1, 2))


@pytest.mark.parametrize("loss_of_rows,width", [(mlp_loss, 6), (twice_loss, 6), (sequence_loss, 2)])
def test_norms_and_clipped_sums_match_brute_force(loss_of_rows, width):
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(width, 5), nn.Tanh(), nn.Linear(5, 6 if width == 6 else 2, bias=False))
    x = torch.randn(7, 6)
    truth = brute_force(net, loss_of_rows, x)
    sq, sums = ghost(net, loss_of_rows, x)
    torch.testing.assert_close(sq.float(), truth.pow(2).sum(1), rtol=1e-4, atol=1e-9)
    f = torch.rand(7)
    got = torch.cat([sums[p](f).reshape(-1) for p in net.parameters()])
    torch.testing.assert_close(got, f @ truth, rtol=1e-4, atol=1e-7)


def test_an_unused_layer_gets_zero_and_a_reshaped_batch_is_refused():
    net = nn.ModuleDict({"used": nn.Linear(3, 2), "unused": nn.Linear(3, 2)})
    hooks = LinearGhost([net])
    net["used"](torch.randn(4, 3)).sum().backward()
    sq, sums = hooks.per_example(4)
    assert torch.count_nonzero(sums[net["unused"].weight](torch.ones(4))) == 0
    hooks.clear()
    net["used"](torch.randn(8, 3)).sum().backward()  # 8 rows for a batch said to be 4
    with pytest.raises(GenzooError, match="reshapes its batch"):
        hooks.per_example(4)


def test_only_linear_modules_are_ghosted_and_disabled_hooks_record_nothing():
    assert linear_only(nn.Sequential(nn.Linear(2, 2), nn.ReLU(), nn.Linear(2, 1)))
    assert not linear_only(nn.Sequential(nn.Linear(2, 2), nn.LayerNorm(2)))
    assert not linear_only(nn.ReLU())  # no parameters: nothing to ghost
    net = nn.Linear(2, 2)
    hooks = LinearGhost([net])
    hooks.enabled = False
    net(torch.randn(3, 2)).sum().backward()
    assert hooks.records == {}


def test_a_frozen_layer_counts_for_nothing():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2))
    x = torch.randn(5, 3)
    for p in net[0].parameters():
        p.requires_grad_(False)
    sq, sums = ghost(net, mlp_loss, x)
    truth = brute_force(net, mlp_loss, x)  # the trained layer's gradients only
    torch.testing.assert_close(sq.float(), truth.pow(2).sum(1), rtol=1e-4, atol=1e-9)
    assert net[0].weight not in sums
