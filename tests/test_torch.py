"""torch tensors in and out: a round trip with the dtype and device kept, and the inputs
that are refused (requires_grad, a torch / numpy mix)."""
import numpy as np
import pytest

from conftest import blobs
from ul4m4 import UL4M4Imputer


def test_torch_round_trip():
    torch = pytest.importorskip("torch", reason="torch is not installed")
    Xs, P, _ = blobs(dtype=np.float32)
    T = [torch.from_numpy(X.copy()) for X in Xs]
    Pt = torch.from_numpy(P.copy())
    before = [t.clone() for t in T]
    imp = UL4M4Imputer(4, random_state=0, n_threads=1).fit(T, mask=Pt)
    out, imputed, unfilled = imp.transform(T, mask=Pt, return_masks=True)
    assert isinstance(out, list) and len(out) == 2
    for o, t in zip(out, T):
        assert isinstance(o, torch.Tensor) and o.dtype == t.dtype == torch.float32 and o.device == t.device
        assert o.shape == t.shape
    for msk in (imputed, unfilled):
        assert isinstance(msk, torch.Tensor) and msk.dtype == torch.bool and tuple(msk.shape) == P.shape
    # same numbers as the numpy path
    imp_np = UL4M4Imputer(4, random_state=0, n_threads=1).fit(Xs, mask=P)
    out_np, imp_n, unf_n = imp_np.transform(Xs, mask=P, return_masks=True)
    np.testing.assert_array_equal(imp.labels_, imp_np.labels_)
    for o, on in zip(out, out_np):
        assert np.array_equal(o.numpy(), on, equal_nan=True)
    np.testing.assert_array_equal(imputed.numpy(), imp_n)
    np.testing.assert_array_equal(unfilled.numpy(), unf_n)
    # inputs untouched (NaN where absent) and outputs complete
    for t, b in zip(T, before):
        assert torch.equal(torch.nan_to_num(t, nan=1234.5), torch.nan_to_num(b, nan=1234.5))
    assert all(torch.isfinite(o).all() for o in out)
    labels = imp.predict(T, mask=Pt)
    assert isinstance(labels, torch.Tensor)
    np.testing.assert_array_equal(labels.numpy(), imp_np.predict(Xs, mask=P))
    # without a mask: NaN rows are absent
    out2 = imp.transform(T)
    for o, on in zip(out2, out_np):
        assert np.array_equal(o.numpy(), on)


def test_torch_requires_grad_and_float64_and_dense():
    torch = pytest.importorskip("torch", reason="torch is not installed")
    Xs, P, _ = blobs(dtype=np.float64)
    T = [torch.tensor(np.nan_to_num(X), requires_grad=True) for X in Xs]
    Pt = torch.from_numpy(P)
    imp = UL4M4Imputer(3, random_state=1).fit(T, mask=Pt)
    out = imp.transform(T, mask=Pt)
    assert all(o.dtype == torch.float64 and not o.requires_grad for o in out)
    for o, t, m in zip(out, T, range(2)):
        rows = torch.from_numpy(P[:, m])
        assert torch.equal(o[rows], t.detach()[rows])
    # one 2-D tensor with NaN blocks + modality_dims -> one tensor
    dense = torch.from_numpy(np.hstack(Xs).astype(np.float32))
    impd = UL4M4Imputer(3, random_state=1, modality_dims=[4, 2]).fit(dense)
    outd = impd.transform(dense)
    assert isinstance(outd, torch.Tensor) and outd.dtype == torch.float32 and outd.shape == dense.shape
    assert torch.isfinite(outd).all()
    # non-contiguous tensor
    nc = torch.from_numpy(np.asfortranarray(np.hstack(Xs).astype(np.float32)))
    assert not nc.is_contiguous()
    assert torch.equal(impd.transform(nc), outd)


def test_torch_numpy_mix_rejected():
    torch = pytest.importorskip("torch", reason="torch is not installed")
    Xs, P, _ = blobs()
    with pytest.raises(TypeError, match="mix of torch tensors and numpy arrays"):
        UL4M4Imputer(2).fit([torch.from_numpy(Xs[0]), Xs[1]], mask=P)
