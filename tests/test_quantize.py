import torch

from genlab.nn import VectorQuantizer


def _vq(**kw):
    torch.manual_seed(0)
    return VectorQuantizer(**{"num_codes": 4, "dim": 2, "decay": 0.5, "eps": 0.0, **kw})


def test_straight_through_gradient_and_commitment():
    vq = _vq(dead_after=0).eval()
    z = torch.randn(3, 2, 4, 4, requires_grad=True)
    out = vq(z)
    assert out.codes.shape == (3, 4, 4) and out.codes.dtype == torch.long
    # the forward value is the nearest code
    assert torch.allclose(out.z_q, vq.embed(out.codes))
    # the decoder's gradient reaches the encoder unchanged (straight through)
    g = torch.randn_like(z)
    (grad,) = torch.autograd.grad((out.z_q * g).sum(), z)
    assert torch.allclose(grad, g)
    # the commitment loss pulls z_e toward its (stop-gradient) code: beta * 2 (z - e) / N
    (grad,) = torch.autograd.grad(vq(z).loss, z)
    e = vq.embed(out.codes)
    assert torch.allclose(grad, vq.beta * 2 * (z - e).detach() / z.numel(), atol=1e-6)


def test_ema_update_arithmetic_on_known_inputs():
    vq = _vq(dead_after=0)
    vq.codebook.copy_(torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0], [10.0, 10.0]]))
    vq.embed_sum.copy_(vq.codebook)
    vq.cluster_size.fill_(1.0)
    vq.initialized.fill_(True)
    # two vectors near code 0, one near code 1, none near codes 2 and 3
    flat = torch.tensor([[1.0, 0.0], [0.0, 1.0], [9.0, 0.0]])
    vq.train()(flat)
    # N_k = 0.5 * 1 + 0.5 * n_k; m_k = 0.5 * e_k + 0.5 * sum z
    assert torch.allclose(vq.cluster_size, torch.tensor([1.5, 1.0, 0.5, 0.5]))
    expected_sum = torch.tensor([[0.5, 0.5], [9.5, 0.0], [0.0, 5.0], [5.0, 5.0]])
    assert torch.allclose(vq.embed_sum, expected_sum)
    assert torch.allclose(vq.codebook, expected_sum / vq.cluster_size[:, None])
    assert vq.unused_steps.tolist() == [0, 0, 1, 1]


def test_first_batch_initialises_the_codebook_from_data():
    vq = _vq(dead_after=0).train()
    flat = torch.randn(32, 2) + 100.0
    vq(flat)
    assert bool(vq.initialized)
    assert (vq.codebook > 50).all()  # every code starts among the batch's vectors


def test_dead_code_restart_fires_and_revives_codes():
    vq = _vq(dead_after=3).train()
    # all data in one small cluster: after init, most codes fall unused as EMA pulls them in
    data = torch.tensor([[5.0, 5.0]]) + 0.01 * torch.randn(64, 2)
    vq(data)
    vq.codebook[1:] = -100.0  # three codes far from any data: dead
    vq.embed_sum[1:] = -100.0
    for _ in range(2):
        vq(data)
    assert int(vq.restarts) == 0 and vq.unused_steps[1:].tolist() == [2, 2, 2]
    vq(data)  # third unused step: restarted on batch vectors
    assert int(vq.restarts) == 3
    assert (vq.codebook - 5.0).abs().max() < 0.1
    assert vq.unused_steps.tolist() == [0, 0, 0, 0]
    # the revived codes are used again
    used = vq.eval()(data + 0.05 * torch.randn(64, 2)).usage
    assert used > 0.25


def test_statistics():
    vq = _vq(dead_after=0).eval()
    vq.codebook.copy_(torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0], [10.0, 10.0]]))
    out = vq(vq.codebook.clone())  # each code once: uniform
    assert torch.isclose(out.perplexity, torch.tensor(4.0)) and out.usage == 1.0
    out = vq(torch.zeros(5, 2))
    assert torch.isclose(out.perplexity, torch.tensor(1.0)) and out.usage == 0.25
