"""Data: real CIFAR-10 / MNIST from $BNLIB_DATA, standardised; damaged or altered files give one clear error."""

import json
import os
import re
import sys
import types

import numpy as np
import pytest
import torch

from bnlib import checksums, data


def test_cifar_mini_is_nchw_standardised_with_official_labels():
    d = data.load("cifar10-mini")
    assert d.X_train.shape == (2000, 3, 32, 32) and d.X_test.shape == (1000, 3, 32, 32)
    assert d.y_train[:10].tolist() == [6, 9, 9, 4, 1, 1, 2, 7, 8, 3]  # data README
    mean, std = d.X_train.mean(dim=(0, 2, 3)), d.X_train.std(dim=(0, 2, 3))
    assert torch.allclose(mean, torch.zeros(3), atol=1e-5) and torch.allclose(std, torch.ones(3), atol=1e-5)


def test_channel_stats_are_exact_and_the_same_at_any_thread_count():
    x = torch.from_numpy(np.load(data.data_root() / "cifar10-mini.npz")["x_train"]).permute(0, 3, 1, 2)
    ref = x.numpy().astype(np.float64) / 255
    before = torch.get_num_threads()
    try:
        got = []
        for threads in (1, 2):
            torch.set_num_threads(threads)
            got.append(data.channel_stats(x, chunk=300))  # uneven chunks: order does not matter
    finally:
        torch.set_num_threads(before)
    assert all(torch.equal(a, b) for a, b in zip(*got, strict=True))
    mean, std = got[0]
    assert np.allclose(mean.flatten(), ref.mean(axis=(0, 2, 3)), rtol=1e-12)
    assert np.allclose(std.flatten(), ref.std(axis=(0, 2, 3), ddof=1), rtol=1e-9)


def test_pixels_match_the_npz():
    raw = np.load(data.data_root() / "mnist-mini.npz")["x_train"]
    d = data.load("mnist-mini", train_size=5)
    assert d.X_train.shape == (5, 1, 28, 28)
    back = d.X_train[:, 0].numpy()  # undo the standardisation up to an affine map
    corr = np.corrcoef(back.ravel(), raw[:5].ravel().astype(float))[0, 1]
    assert corr > 0.999999


def test_missing_data_says_where_it_looked_and_how_to_fix(tmp_path, monkeypatch):
    monkeypatch.setenv("BNLIB_DATA", str(tmp_path))
    with pytest.raises(FileNotFoundError, match=r"(?s)mnist.*Looked in.*BNLIB_DATA.*Fix:"):
        data.load("mnist")


def test_unknown_dataset():
    with pytest.raises(ValueError, match="Unknown data set 'svhn'"):
        data.load("svhn")


def test_linear_regression_is_seeded_and_linear():
    a, b = data.linear_regression(n=50, seed=3), data.linear_regression(n=50, seed=3)
    assert torch.equal(a.X_train, b.X_train) and torch.equal(a.y_train, b.y_train)
    A = torch.linalg.lstsq(a.X_train, a.y_train).solution  # exact fit: the targets are linear
    assert torch.allclose(a.X_train @ A, a.y_train, atol=1e-4)


# --- data faults: damaged files, arrays that differ from the official sets, the check's cache ---------------------


def _mini() -> dict[str, np.ndarray]:
    """The real mnist-mini arrays (a fresh copy, safe to alter)."""
    with np.load(data.data_root() / "mnist-mini.npz") as f:
        return {k: f[k].copy() for k in checksums.KEYS}


def _single_error(excinfo: pytest.ExceptionInfo) -> None:
    """One exception, raised ``from None``: no chained traceback of np.load / zipfile."""
    assert excinfo.value.__cause__ is None and excinfo.value.__suppress_context__


@pytest.fixture
def digests(monkeypatch) -> list[str]:
    """A fresh check cache, and the names of the arrays hashed from here on."""
    monkeypatch.setattr(data, "_VERIFIED", {})
    monkeypatch.setattr(data, "_WARNED", set())
    calls: list[str] = []
    real = checksums.array_digest

    def counting(a: np.ndarray) -> str:
        calls.append(f"{a.dtype}{a.shape}")
        return real(a)

    monkeypatch.setattr(checksums, "array_digest", counting)
    return calls


@pytest.mark.parametrize("name,fix", [("mnist-mini", "replace it with a good copy"),
                                      ("mnist", "re-downloads it with torchvision")])
def test_truncated_file_is_one_message_naming_the_file_and_the_fix(tmp_path, name, fix):
    good = (data.data_root() / f"{name}.npz").read_bytes()
    (tmp_path / f"{name}.npz").write_bytes(good[: len(good) // 2])
    where = re.escape(str(tmp_path / f"{name}.npz"))
    with pytest.raises(data.DataFileError, match=rf"(?s){where} is damaged: it is truncated.*Fix: .*{fix}.*"
                                                 r"export BNLIB_DATA=") as e:
        data.load(name, root=tmp_path)
    _single_error(e)


@pytest.mark.parametrize("content,what", [(b"", "empty"), (b"not numpy at all\n" * 64, "not a valid npz"),
                                          (b"<html><body>404</body></html>", "HTML page")])
def test_garbage_file_says_it_is_not_an_npz(tmp_path, content, what):
    (tmp_path / "mnist-mini.npz").write_bytes(content)
    with pytest.raises(data.DataFileError, match=rf"(?s)mnist-mini\.npz is damaged: .*{what}.*Fix:") as e:
        data.load("mnist-mini", root=tmp_path)
    _single_error(e)


def test_corrupt_inside_says_corrupt(tmp_path):
    b = bytearray((data.data_root() / "mnist-mini.npz").read_bytes())
    b[len(b) // 3: len(b) // 3 + 64] = bytes(64)  # a damaged stretch inside, the zip directory intact
    (tmp_path / "mnist-mini.npz").write_bytes(bytes(b))
    with pytest.raises(data.DataFileError, match=r"(?s)mnist-mini\.npz is damaged: it is corrupt.*Fix:") as e:
        data.load("mnist-mini", root=tmp_path)
    _single_error(e)


def test_npy_instead_of_npz(tmp_path):
    with open(tmp_path / "mnist-mini.npz", "wb") as f:
        np.save(f, _mini()["x_train"])
    with pytest.raises(data.DataFileError, match=r"single \.npy array"):
        data.load("mnist-mini", root=tmp_path)


def test_missing_key(tmp_path):
    a = _mini()
    del a["y_test"]
    np.savez(tmp_path / "mnist-mini.npz", **a)
    with pytest.raises(data.DataFileError, match=r"(?s)mnist-mini\.npz is damaged: .*lacks the key\(s\) y_test.*Fix:"):
        data.load("mnist-mini", root=tmp_path)


def test_wrong_dtype_or_shape(tmp_path):
    a = _mini()
    a["y_train"] = a["y_train"].astype(np.float32)
    np.savez(tmp_path / "mnist-mini.npz", **a)
    with pytest.raises(data.DataFileError, match=r"wrong shape or dtype: y_train is float32 \(2000,\)"):
        data.load("mnist-mini", root=tmp_path, verify=False)  # a layout fault is an error even unverified


def test_a_changed_label_is_a_mismatch_naming_the_array(tmp_path, digests):
    a = _mini()
    a["y_train"][7] = (a["y_train"][7] + 1) % 10
    np.savez_compressed(tmp_path / "mnist-mini.npz", **a)
    with pytest.raises(data.DataMismatchError, match=r"(?s)mnist-mini\.npz does not hold the official mnist-mini: "
                                                     r"the sha256 checksum of y_train differs.*verify=False") as e:
        data.load("mnist-mini", root=tmp_path)
    _single_error(e)
    assert "x_train" not in str(e.value).split("Fix:")[0]


def test_opt_out_warns_once(tmp_path, monkeypatch, digests, recwarn):
    a = _mini()
    a["x_test"][0, 0, 0] ^= 1
    np.savez(tmp_path / "mnist-mini.npz", **a)
    with pytest.warns(UserWarning, match=r"checksum of x_test differs.*verification is off"):
        d = data.load("mnist-mini", root=tmp_path, verify=False)
    assert d.X_test.shape == (1000, 1, 28, 28)
    recwarn.clear()
    data.load("mnist-mini", root=tmp_path, verify=False)
    monkeypatch.setenv("BNLIB_DATA_VERIFY", "0")
    data.load("mnist-mini", root=tmp_path)
    assert not recwarn.list and len(digests) == 4  # warned once, hashed once


def test_env_opt_out(tmp_path, monkeypatch, digests):
    a = _mini()
    a["y_test"][0] = 9 - a["y_test"][0]
    np.savez(tmp_path / "mnist-mini.npz", **a)
    monkeypatch.setenv("BNLIB_DATA_VERIFY", "0")
    with pytest.warns(UserWarning, match="y_test"):
        data.load("mnist-mini", root=tmp_path)


@pytest.mark.parametrize("name", data.DATASETS)
def test_the_real_files_verify(name, digests):
    a = data._arrays(name, None)  # raises on a mismatch
    assert all(checksums.array_digest(a[k]) == checksums.CHECKSUMS[name][k] for k in checksums.KEYS)


def test_a_verified_file_is_not_hashed_again(tmp_path, digests):
    data.load("mnist", train_size=10, test_size=10)  # the full set, from $BNLIB_DATA
    data.load("mnist", train_size=10, test_size=10)
    assert len(digests) <= 4  # the in-process cache (none if a sidecar there holds the check)
    path = tmp_path / "mnist-mini.npz"
    path.write_bytes((data.data_root() / "mnist-mini.npz").read_bytes())
    data.load("mnist-mini", root=tmp_path)
    side = json.loads((tmp_path / "mnist-mini.npz.verified").read_text())
    assert side["differ"] == [] and side["size"] == path.stat().st_size
    digests.clear()
    data._VERIFIED.clear()  # as in a new process: the sidecar holds the result
    data.load("mnist-mini", root=tmp_path)
    assert digests == []
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # a touched file is checked again
    data.load("mnist-mini", root=tmp_path)
    assert len(digests) == 4


def test_no_sidecar_in_a_read_only_folder(tmp_path, digests):
    (tmp_path / "mnist-mini.npz").write_bytes((data.data_root() / "mnist-mini.npz").read_bytes())
    tmp_path.chmod(0o555)
    try:
        data.load("mnist-mini", root=tmp_path)
        data.load("mnist-mini", root=tmp_path)
    finally:
        tmp_path.chmod(0o755)
    assert [p.name for p in tmp_path.iterdir()] == ["mnist-mini.npz"] and len(digests) == 4


def _fake_torchvision(monkeypatch, arrays: dict[str, np.ndarray]) -> None:
    """A torchvision whose MNIST 'downloads' ``arrays`` (tensors, like the real one): no network."""

    class MNIST:
        def __init__(self, root, train: bool, download: bool) -> None:
            s = "train" if train else "test"
            self.data, self.targets = torch.from_numpy(arrays[f"x_{s}"]), torch.from_numpy(arrays[f"y_{s}"])

    datasets = types.SimpleNamespace(MNIST=MNIST, CIFAR10=None)
    monkeypatch.setitem(sys.modules, "torchvision", types.SimpleNamespace(datasets=datasets))


def test_a_download_is_checked_before_use(tmp_path, monkeypatch, digests):
    monkeypatch.setitem(checksums.CHECKSUMS, "mnist", checksums.CHECKSUMS["mnist-mini"])  # small and fast
    _fake_torchvision(monkeypatch, _mini())
    d = data.load("mnist", root=tmp_path, train_size=100)
    assert d.y_train[:10].tolist() == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mnist.npz", "mnist.npz.verified"]
    assert len(digests) == 4  # hashed once, after writing; the load that follows uses the cached check


def test_an_altered_download_is_not_kept(tmp_path, monkeypatch, digests):
    monkeypatch.setitem(checksums.CHECKSUMS, "mnist", checksums.CHECKSUMS["mnist-mini"])
    bad = _mini()
    bad["y_test"][-1] = (bad["y_test"][-1] + 1) % 10
    _fake_torchvision(monkeypatch, bad)
    with pytest.raises(data.DataMismatchError, match=r"(?s)download of mnist was not kept as .*mnist\.npz.*"
                                                     r"checksum of y_test differs.*retry the download") as e:
        data.load("mnist", root=tmp_path)
    _single_error(e)
    assert list(tmp_path.iterdir()) == []
