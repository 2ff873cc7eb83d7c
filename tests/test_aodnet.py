"""AOD-Net: parameter count, K-estimation wiring and the J = ReLU(K·I − K + b) output."""

import pytest
import torch
import torch.nn.functional as F

from dehazelab.models.aodnet import AODNet


def test_parameter_count():
    net = AODNet()
    # 1x1 3->3, 3x3 3->3, 5x5 6->3, 7x7 6->3, 3x3 12->3, each with 3 biases
    assert sum(p.numel() for p in net.parameters()) == 1_761
    assert [m.kernel_size[0] for m in (net.conv1, net.conv2, net.conv3, net.conv4, net.conv5)] == [1, 3, 5, 7, 3]


def test_forward_matches_the_paper_equations():
    torch.manual_seed(0)
    net = AODNet()
    x = torch.rand(2, 3, 17, 23)
    r = F.relu
    c1 = r(F.conv2d(x, net.conv1.weight, net.conv1.bias))
    c2 = r(F.conv2d(c1, net.conv2.weight, net.conv2.bias, padding=1))
    c3 = r(F.conv2d(torch.cat([c1, c2], 1), net.conv3.weight, net.conv3.bias, padding=2))
    c4 = r(F.conv2d(torch.cat([c2, c3], 1), net.conv4.weight, net.conv4.bias, padding=3))
    k = r(F.conv2d(torch.cat([c1, c2, c3, c4], 1), net.conv5.weight, net.conv5.bias, padding=1))
    torch.testing.assert_close(net.estimate_k(x), k)
    y = net(x)
    assert y.shape == x.shape
    torch.testing.assert_close(y, r(k * x - k + 1.0))


def test_identity_when_k_is_one_and_b_is_one():
    # K = 1 everywhere gives J = I: zero all weights, bias 1 in conv5
    net = AODNet()
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, torch.nn.Conv2d):
                m.weight.zero_()
                m.bias.zero_()
        net.conv5.bias.fill_(1.0)
    x = torch.rand(1, 3, 8, 8)
    torch.testing.assert_close(net(x), x)


def test_bad_input_raises():
    with pytest.raises(ValueError):
        AODNet()(torch.rand(3, 8, 8))
