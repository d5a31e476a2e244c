"""Curvature probes against oracles that share no code with ``torch.func``.

* Central finite differences of gradients from plain ``loss.backward()`` on perturbed deep copies
  (float64, step 1e-5: truncation ~h^2 * |f'''| ~ 1e-10, round-off ~eps/h ~ 1e-11).
* The closed form of the last-layer block: logits are linear in W2, so
  H_W2 = mean_n (diag p_n - p_n p_n^T) (x) h_n h_n^T, h_n the last layer's input.
* ``numpy.linalg.eigvalsh`` / ``torch.linalg.eigvalsh`` for Lanczos.
* For the probe specs: the same functions called by hand on the checkpoint's model, and the
  validation images standardised in numpy straight from the data file.
All nets are tiny and float64 (the probe specs: float32 MLPs on MNIST images); every
generator is seeded.
"""

import copy

import numpy as np
import pytest
import torch
from torch import nn

from bnlib import runs
from bnlib.data import DataSpec
from bnlib.models import ModelSpec, mlp
from bnlib.probes.curvature import (
    MAX_DENSE_PARAMS,
    Accuracies,
    HessianBlocks,
    HessianTopK,
    LastLayerHessian,
    NearZeroShare,
    _reorthogonalise,
    block_frobenius,
    hessian,
    hessian_topk,
    hvp,
    lanczos,
    last_layer_hessian,
    last_layer_input,
    last_layer_name,
    layer_name,
    near_zero_share,
    pseudo_condition,
)

H_FD = 1e-5
# torch loads its forward-AD decompositions with torch.jit.script on the first jvp (torch 2.13)
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated")


def tiny(norm: str, sizes=(5, 4, 3), n: int = 12, seed: int = 0):
    """A float64 MLP with non-trivial BN running statistics, and a batch (X, y)."""
    torch.manual_seed(seed)
    model = mlp(norm=norm, sizes=sizes, seed=seed).double()
    X = torch.randn(n, sizes[0], dtype=torch.float64)
    y = torch.randint(0, sizes[-1], (n,))
    with torch.no_grad():
        for _ in range(3):  # move the running statistics away from (0, 1)
            model(X + torch.randn_like(X))
    model.eval()  # the probes must not care which mode the model is left in
    return model, X, y


def flat_grad(model: nn.Module, X, y, theta: torch.Tensor, train: bool) -> torch.Tensor:
    """Gradient of the mean cross-entropy at ``theta`` by ordinary backprop on a copy."""
    m = copy.deepcopy(model).train(train)
    nn.utils.vector_to_parameters(theta, m.parameters())
    nn.functional.cross_entropy(m(X), y).backward()
    return torch.cat([p.grad.reshape(-1) for p in m.parameters()])


def fd_hessian(model, X, y, train: bool) -> torch.Tensor:
    theta = nn.utils.parameters_to_vector(model.parameters()).detach()
    cols = []
    for i in range(theta.numel()):
        e = torch.zeros_like(theta)
        e[i] = H_FD
        cols.append((flat_grad(model, X, y, theta + e, train)
                     - flat_grad(model, X, y, theta - e, train)) / (2 * H_FD))
    return torch.stack(cols)


@pytest.mark.parametrize("norm,bn_mode", [("none", "running"), ("bn", "batch"), ("bn", "running")])
def test_exact_hessian_and_hvp_match_finite_differences(norm, bn_mode):
    model, X, y = tiny(norm)
    H = hessian(model, X, y, bn_mode=bn_mode)
    H_fd = fd_hessian(model, X, y, train=bn_mode == "batch")
    scale = H_fd.abs().max()
    assert torch.allclose(H, H.T, atol=1e-12 * scale)  # symmetric up to round-off
    assert (H - H_fd).abs().max() <= 1e-7 * scale  # FD error budget above, with margin
    g = torch.Generator().manual_seed(1)
    V = torch.randn(4, H.shape[0], generator=g, dtype=torch.float64)
    HV = hvp(model, X, y, V, bn_mode=bn_mode)  # vmap path, (4, P)
    assert torch.allclose(HV, V @ H.T, rtol=0, atol=1e-12 * scale * V.abs().sum(1).max())
    Hv = hvp(model, X, y, V[0], bn_mode=bn_mode)  # single-vector path, (P,)
    assert torch.allclose(Hv, HV[0], rtol=0, atol=1e-13 * scale)


def test_bn_mode_changes_the_hessian():
    """Batch statistics and running statistics give different functions, hence Hessians."""
    model, X, y = tiny("bn")
    Hb = hessian(model, X, y, bn_mode="batch")
    Hr = hessian(model, X, y, bn_mode="running")
    assert (Hb - Hr).abs().max() > 1e-3 * Hb.abs().max()


@pytest.mark.parametrize("norm,bn_mode", [("none", "running"), ("bn", "batch")])
def test_last_layer_block_matches_full_hessian_and_closed_form(norm, bn_mode):
    model, X, y = tiny(norm, sizes=(6, 5, 4))
    name = last_layer_name(model)
    params = dict(model.named_parameters())
    start = sum(p.numel() for p in list(params.values())[: list(params).index(name)])
    W2 = params[name]
    B = last_layer_hessian(model, X, y, bn_mode=bn_mode)  # (K*m, K*m)
    H = hessian(model, X, y, bn_mode=bn_mode)
    sl = slice(start, start + W2.numel())
    assert torch.allclose(B, H[sl, sl], rtol=0, atol=1e-13 * B.abs().max())
    # closed form from the last layer's input h (taken with plain module calls on a copy)
    m = copy.deepcopy(model).train(bn_mode == "batch")
    with torch.no_grad():
        h = m[:-1](X)  # (N, m)
        p = m[-1](h).softmax(1)  # (N, K)
    assert torch.equal(last_layer_input(model, X, bn_mode=bn_mode), h)
    A = torch.diag_embed(p) - p[:, :, None] * p[:, None, :]  # (N, K, K)
    B_cf = torch.einsum("nab,ni,nj->aibj", A, h, h).reshape(B.shape) / X.shape[0]
    assert torch.allclose(B, B_cf, rtol=0, atol=1e-12 * B_cf.abs().max())


def test_lanczos_on_matrices_with_known_spectra():
    """Wishart plus a planted cluster of near-equal top eigenvalues, against eigvalsh."""
    g = torch.Generator().manual_seed(0)
    n = 300
    G = torch.randn(n, 2 * n, generator=g, dtype=torch.float64)
    U, _ = torch.linalg.qr(torch.randn(n, 5, generator=g, dtype=torch.float64))
    A = G @ G.T / (2 * n) + U @ torch.diag(torch.tensor([9.0, 8.999, 8.5, 7, 6.0])
                                           .double()) @ U.T  # (n, n)
    ref = np.sort(np.linalg.eigvalsh(A.numpy()))[::-1]
    out = lanczos(lambda v: A @ v, n, k=8, tol=1e-10, max_iter=n)
    assert out.converged
    # residual <= tol |theta| bounds the error (module docstring); 1e-6 is the acceptance bar
    np.testing.assert_allclose(out.eigenvalues, ref[:8], rtol=1e-6)
    assert out.num_matvecs < n  # it converged before exhausting the space


def test_lanczos_restarts_on_an_invariant_subspace():
    """A start vector inside a 2-d eigenspace: Lanczos must restart to find the rest."""
    A = torch.diag(torch.arange(1.0, 11.0, dtype=torch.float64))  # eigenvalues 1..10
    out = lanczos(lambda v: A @ v, 10, k=10, tol=1e-12, max_iter=10)
    np.testing.assert_allclose(out.eigenvalues, np.arange(10.0, 0, -1), rtol=1e-10)


def test_reorthogonalise_takes_a_second_pass_only_when_one_cancels():
    """One pass suffices for a vector far from the basis; a vector within 1e-9 of the span
    loses ~all of its norm in the first pass, whose rounding then needs the second."""
    g = torch.Generator().manual_seed(0)
    Q, _ = torch.linalg.qr(torch.randn(500, 20, generator=g, dtype=torch.float64))
    Q = Q.T.contiguous()  # (20, 500) orthonormal rows
    for scale, passes in ((1.0, 1), (1e-9, 2)):
        w = Q.T @ torch.randn(20, generator=g, dtype=torch.float64) \
            + scale * torch.randn(500, generator=g, dtype=torch.float64)
        w1, w2 = w.clone(), w.clone()
        _reorthogonalise(w1, Q)
        for _ in range(passes):
            w2 -= Q.T @ (Q @ w2)
        assert torch.equal(w1, w2)  # exactly the passes the test promises
        assert float((Q @ w1).abs().max()) <= 1e-15 * float(w1.norm()) * 500


@pytest.mark.parametrize("norm,bn_mode", [("none", "running"), ("bn", "batch")])
def test_hessian_topk_equals_dense_eigvalsh(norm, bn_mode):
    model, X, y = tiny(norm, sizes=(8, 16, 4), n=32)  # P = 212 (+32 with BN)
    ref = torch.linalg.eigvalsh(hessian(model, X, y, bn_mode=bn_mode)).flip(0).numpy()
    top = hessian_topk(model, X, y, k=6, bn_mode=bn_mode, tol=1e-10, max_iter=244)
    assert top.converged
    np.testing.assert_allclose(top.eigenvalues, ref[:6], rtol=1e-6)


def test_probes_leave_the_model_bit_identical():
    model, X, y = tiny("bn")
    model.train()
    before = copy.deepcopy(model.state_dict())
    rng = torch.get_rng_state()
    P = sum(p.numel() for p in model.parameters())
    for bn_mode in ("batch", "running"):
        hvp(model, X, y, torch.ones(3, P, dtype=torch.float64), bn_mode=bn_mode)
        hessian(model, X, y, bn_mode=bn_mode)
        last_layer_hessian(model, X, y, bn_mode=bn_mode)
        hessian_topk(model, X, y, k=2, bn_mode=bn_mode)
        last_layer_input(model, X, bn_mode=bn_mode)
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # params and BN buffers
    assert int(after["3.num_batches_tracked"]) == int(before["3.num_batches_tracked"])
    assert model.training and all(m.training for m in model.modules())
    assert torch.equal(torch.get_rng_state(), rng)


def test_pseudo_condition():
    lam = np.array([0.5, 4.0, 1.0, 2.0])  # unsorted on purpose
    assert pseudo_condition(lam, k=3) == pytest.approx(4.0)
    with pytest.raises(ValueError, match="at least k=10"):
        pseudo_condition(lam)


def test_errors_name_the_problem():
    model, X, y = tiny("none")
    with pytest.raises(ValueError, match=r"Unknown parameter name\(s\) \['9.weight'\]"):
        hessian(model, X, y, bn_mode="batch", names=["9.weight"])
    with pytest.raises(ValueError, match=r"V must have shape \(39,\)"):
        hvp(model, X, y, torch.ones(5, dtype=torch.float64), bn_mode="batch")
    with pytest.raises(ValueError, match="bn_mode must be one of"):
        hvp(model, X, y, torch.ones(39, dtype=torch.float64), bn_mode="eval")
    with pytest.raises(ValueError, match="k must be in"):
        lanczos(lambda v: v, 5, k=6)
    big = mlp(sizes=(200, 100, 10))  # 21,110 parameters > MAX_DENSE_PARAMS
    assert sum(p.numel() for p in big.parameters()) > MAX_DENSE_PARAMS
    with pytest.raises(ValueError, match="too large"):
        hessian(big, torch.zeros(2, 200), torch.zeros(2, dtype=torch.long), bn_mode="batch")


# ---- the probe specs, on a stored trajectory ----------------------------------------------------

def mnist_trajectory(norm="bn"):
    """A small 784-16-10 MLP trained with Adam on 300 MNIST images, 100 per step."""
    from bnlib.train import TrainConfig

    return runs.Trajectory(DataSpec("mnist-mini", train_size=300, test_size=200),
                           ModelSpec("mlp", norm=norm, sizes=(784, 16, 10)),
                           TrainConfig("adam", lr=1e-2, weight_decay=1e-3, batch_size=100, num_steps=6,
                                       eval_every=6, record_every=3, record_size=50), seed=1)


def test_hessian_probe_specs_equal_the_functions_on_the_checkpoint(tmp_path):
    store, traj = runs.Store(tmp_path, progress=False), mnist_trajectory()
    block = store.probe(traj, LastLayerHessian(size=64), steps=(0, 3))
    top = store.probe(traj, HessianTopK(size=64, k=4, tol=1e-6), steps=(3,))
    tr = next(store.states(traj, (3,)))
    X, y = tr.data.X_train[:64], tr.data.y_train[:64]
    H = last_layer_hessian(tr.model, X, y, bn_mode="batch").double()
    np.testing.assert_array_equal(block["eigenvalues"][1], torch.linalg.eigvalsh(H).flip(0).numpy())
    h = last_layer_input(tr.model, X, bn_mode="batch")
    assert block["feat_sq"][1] == pytest.approx(float(h.pow(2).mean()))
    assert block["eigenvalues"].shape == (2, 160)  # 10 x 16 weights of W2, at two steps
    e = hessian_topk(tr.model, X, y, k=4, bn_mode="batch", tol=1e-6)
    np.testing.assert_array_equal(top["eigenvalues"][0], e.eigenvalues)
    assert bool(top["converged"][0]) and int(top["num_matvecs"][0]) == e.num_matvecs
    # the block's eigenvalues interlace the full Hessian's: lambda_1(block) <= lambda_1(full)
    assert block["eigenvalues"][1][0] <= top["eigenvalues"][0][0] * (1 + 1e-5)


def test_evaluation_validation_set_is_held_out_and_standardised_like_the_training_images(tmp_path):
    import os

    store, traj = runs.Store(tmp_path, progress=False), mnist_trajectory("none")
    ev = Accuracies(val_start=400, val_size=100, train_size=300)
    res = store.probe(traj, ev, steps=(0, 6))
    tr = next(store.states(traj, (6,)))
    # oracle: standardise the raw uint8 images in numpy with the 300 training images' statistics
    with np.load(os.path.join(os.environ["BNLIB_DATA"], "mnist-mini.npz")) as f:
        raw = f["x_train"][:500].astype(np.float64) / 255
        y_val = torch.from_numpy(f["y_train"][400:500])
    mean, std = raw[:300].mean(), raw[:300].std(ddof=1)
    X_val = torch.tensor((raw[400:500] - mean) / std, dtype=torch.float32)[:, None]  # (100, 1, 28, 28)
    with torch.no_grad():
        logits = tr.model.eval()(X_val)
    acc = (logits.argmax(1) == y_val).double().mean().item()
    assert res["val_acc"][1] == pytest.approx(acc, abs=1e-6)  # float32 mean; one flip would be 0.01
    loss = torch.nn.functional.cross_entropy(logits, y_val).item()
    assert res["val_loss"][1] == pytest.approx(loss, rel=1e-4)  # float32 standardisation
    assert res["train_acc"].shape == res["test_acc"].shape == (2,)
    with pytest.raises(ValueError, match="must follow the trajectory's 300 training images"):
        store.probe(traj, Accuracies(val_start=200, val_size=100), steps=(6,))


def test_step_times_interleaved_one_value_per_round_and_network():
    from bnlib.data import Data
    from bnlib.probes.evaluation import step_times

    g = torch.Generator().manual_seed(0)
    d = Data("toy", torch.randn(64, 1, 4, 4, generator=g), torch.randint(10, (64,), generator=g),
             torch.randn(8, 1, 4, 4), torch.randint(10, (8,)))
    spec = ModelSpec("mlp", norm="bn", sizes=(16, 8, 10), norm_after_relu=True)
    threads = torch.get_num_threads()
    t = step_times({"none": spec.with_(norm="none"), "bn": spec}, d, lr=1e-3, l2=1e-4, batch_size=16,
                   rounds=3, steps=2)
    assert set(t) == {"none", "bn"} and all(v.shape == (3,) and np.all(v > 0) for v in t.values())
    assert torch.get_num_threads() == threads  # the caller's thread count is restored


def test_lanczos_ritz_vectors_and_weights():
    rng = np.random.default_rng(0)
    Q, _ = np.linalg.qr(rng.standard_normal((40, 40)))
    lam = np.linspace(10, 1, 40)
    A = torch.from_numpy(Q @ np.diag(lam) @ Q.T)
    e = lanczos(lambda v: A @ v, 40, k=3, tol=1e-10, max_iter=40, vectors=True)
    for t, u in zip(e.eigenvalues, e.vectors, strict=True):
        np.testing.assert_allclose(A.numpy() @ u, t * u, atol=1e-6)
        assert np.linalg.norm(u) == pytest.approx(1.0)
    full = lanczos(lambda v: A @ v, 40, k=40, tol=1e-12, max_iter=40)
    assert full.weights.sum() == pytest.approx(1.0)  # quadrature weights of a unit start vector


def test_block_frobenius_exact_on_block_structure_and_unbiased():
    rng = np.random.default_rng(1)
    B = rng.standard_normal((30, 30))
    A = torch.from_numpy(B + B.T)
    A[:20, 20:] = 0.0
    A[20:, :20] = 0.0  # block diagonal: the off-diagonal estimates are exactly zero
    fro = block_frobenius(lambda v: A @ v, (20, 10), probes=3)
    assert fro[0, 1] == 0.0 and fro[1, 0] == 0.0
    C = torch.from_numpy(B + B.T)
    est = block_frobenius(lambda v: C @ v, (20, 10), probes=2000)
    exact = np.array([[float(C[:20, :20].pow(2).sum()), float(C[:20, 20:].pow(2).sum())],
                      [float(C[20:, :20].pow(2).sum()), float(C[20:, 20:].pow(2).sum())]])
    np.testing.assert_allclose(est, exact, rtol=0.1)


def test_near_zero_share_by_quadrature():
    lam = torch.cat([torch.linspace(1.0, 0.5, 60), torch.zeros(140)]).double()  # 70% zeros
    shares = [near_zero_share(lanczos(lambda v: lam * v, 200, k=30, tol=1e-12, max_iter=30, seed=s), 0.01)
              for s in range(5)]
    assert np.mean(shares) == pytest.approx(0.7, abs=0.07)


@pytest.mark.parametrize("norm", ["none", "bn"])
def test_hessian_blocks_probe_matches_dense_hessians(norm):
    from types import SimpleNamespace

    m, X, y = tiny(norm, n=40)
    ctx = SimpleNamespace(model=m, data=SimpleNamespace(X_train=X, y_train=y), cfg=SimpleNamespace(loss="ce"))
    out = HessianBlocks(size=40, k=4, tol=1e-8, probes=400).measure(ctx)
    names = [layer_name(m, 0), layer_name(m, -1)]
    assert names[1] == last_layer_name(m)
    p1 = dict(m.named_parameters())[names[0]].numel()
    H = hessian(m, X, y, bn_mode="batch", names=names).double().numpy()
    exact = np.array([[np.sum(H[:p1, :p1] ** 2), np.sum(H[:p1, p1:] ** 2)],
                      [np.sum(H[p1:, :p1] ** 2), np.sum(H[p1:, p1:] ** 2)]])
    np.testing.assert_allclose(out["frobenius_sq"], exact, rtol=0.25)
    assert float(out["w1_lam1"]) == pytest.approx(np.linalg.eigvalsh(H[:p1, :p1])[-1], rel=1e-5)
    lam, U = np.linalg.eigh(hessian(m, X, y, bn_mode="batch").double().numpy())
    np.testing.assert_allclose(out["full_top"], lam[::-1][:4], rtol=1e-5)
    sizes = {n: p.numel() for n, p in m.named_parameters()}
    start = sum(sizes[n] for n in list(sizes)[:list(sizes).index(names[1])])
    share = np.sum(U[start:start + sizes[names[1]], ::-1][:, :4] ** 2, 0)
    np.testing.assert_allclose(out["w2_share"], share, atol=1e-4)


def test_near_zero_share_probe_is_the_quadrature_of_the_whole_hessian():
    from types import SimpleNamespace

    m, X, y = tiny("none", sizes=(5, 8, 3), n=4)  # 4 images: rank <= 4 x 2 + 2 x 27 < P = 75
    ctx = SimpleNamespace(model=m, data=SimpleNamespace(X_train=X, y_train=y), cfg=SimpleNamespace(loss="ce"))
    out = NearZeroShare(size=4, steps=75, band=1e-6).measure(ctx)
    lam = np.linalg.eigvalsh(hessian(m, X, y, bn_mode="batch").double().numpy())
    assert int(out["params"]) == 75 and float(out["lam1"]) == pytest.approx(lam[-1], rel=1e-6)
    e = hessian_topk(m, X, y, k=75, bn_mode="batch", tol=1e-12, max_iter=75)
    assert float(out["share"]) == pytest.approx(near_zero_share(e, 1e-6))
    assert 0 < float(out["share"]) < 1 and np.mean(np.abs(lam) <= 1e-6 * lam[-1]) > 1 - (8 + 54) / 75
