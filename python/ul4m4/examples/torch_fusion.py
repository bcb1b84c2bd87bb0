#!/usr/bin/env python
"""PyTorch integration: complete missing modality embeddings with ul4m4, then train a fusion head.

The pipeline (the paper's setting, on the UCI Multiple Features data shipped with ul4m4,
whose six views stand in for six frozen modality encoders' embeddings):

1. frozen embeddings with missing modalities: ``missing_rate_mask`` hides a share of the
   (sample, modality) slots; the hidden values are set to NaN, as a real pipeline would
   store an absent embedding;
2. a stratified train/test split; :class:`ul4m4.UL4M4Imputer` is fitted on the TRAINING
   rows only (torch tensors go in, torch tensors come out);
3. the training batches are completed on the fly by a DataLoader ``collate_fn``
   (:class:`CompletingCollate`); the test set is completed in one call;
4. a fusion head, the paper's: one linear projection per modality to a common width,
   the resulting modality tokens (plus a learned modality embedding) go through a small
   multi-head self-attention layer, are mean-pooled and classified by an MLP;
5. F1-micro on the test set.

Run ``python -m ul4m4.examples.torch_fusion`` (``--quick`` for a fast run, about 10 s); the
source is ``ul4m4/examples/torch_fusion.py`` in the installed package.

Completing a batch inside a DataLoader
--------------------------------------
::

    imp = ul4m4.UL4M4Imputer(n_clusters=40, completion="soft").fit(train_views, mask=train_mask)
    loader = DataLoader(dataset, batch_size=64, shuffle=True, collate_fn=CompletingCollate(imp))
    for views, mask, y, idx in loader:   # views: list of (B, d_m) tensors, already complete
        ...

``imp.transform(list_of_tensors, mask=bool_tensor)`` returns a list of tensors of the same
dtypes; observed slots are returned bit-for-bit and each row is completed independently, so
completing batch by batch gives exactly the rows that completing the whole set at once
gives (the script checks this).  The fitted imputer pickles, so ``num_workers > 0`` works.

Completing inside a training step
---------------------------------
::

    def training_step(views, mask, y):           # views may hold NaN/garbage where ~mask
        views = imp.transform(views, mask=mask)   # CPU tensors in, CPU tensors out
        loss = loss_fn(model(views), y)
        ...

CUDA tensors
------------
Where ul4m4 was built with its CUDA module (compiled when ``nvcc`` is present), CUDA tensors
go to the GPU path and come back as CUDA tensors on the same device; that path is compiled
but has not yet been run on a GPU (``ul4m4.cuda_available()`` tells whether it can run
here). The dependable way today is to complete on the CPU, in the collate function before
the batch is moved (the cheapest place), and move the result::

    filled = imp.transform([v.cpu() for v in views], mask=mask.cpu())
    filled = [v.to(device, non_blocking=True) for v in filled]

:class:`CompletingCollate` does this when given ``device=``.
"""
from __future__ import annotations

import argparse
import sys
import time
from typing import List, Optional, Sequence

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

import ul4m4
from ul4m4.datasets import load_mfeat
from ul4m4.masking import missing_rate_mask


# ----------------------------------------------------------------------------- data
class MaskedViews(Dataset):
    """Samples of a multi-view data set with missing modalities.

    Item ``i`` is ``(views_i, mask_i, y_i, i)``: a list of ``M`` 1-D tensors (NaN where the
    modality is missing), the ``(M,)`` boolean presence row, the label and the index."""

    def __init__(self, views: Sequence[torch.Tensor], mask: torch.Tensor, y: torch.Tensor):
        self.views, self.mask, self.y = list(views), mask, y

    def __len__(self) -> int:
        return int(self.y.shape[0])

    def __getitem__(self, i: int):
        return [v[i] for v in self.views], self.mask[i], self.y[i], i


class CompletingCollate:
    """A DataLoader ``collate_fn`` that completes each batch with a fitted UL4M4Imputer.

    Returns ``(views, mask, y, idx)`` with ``views`` a list of complete ``(B, d_m)`` tensors.
    Completion runs on the CPU; with ``device`` the completed batch is then moved there."""

    def __init__(self, imputer: ul4m4.UL4M4Imputer, device: Optional[torch.device] = None):
        self.imputer = imputer
        self.device = device

    def __call__(self, batch):
        M = len(batch[0][0])
        views = [torch.stack([item[0][m] for item in batch]).cpu() for m in range(M)]
        mask = torch.stack([item[1] for item in batch]).cpu()
        y = torch.stack([item[2] for item in batch])
        idx = torch.tensor([item[3] for item in batch])
        views = self.imputer.transform(views, mask=mask)  # torch in -> torch out
        if self.device is not None:
            views = [v.to(self.device, non_blocking=True) for v in views]
            mask, y = mask.to(self.device), y.to(self.device)
        return views, mask, y, idx


def stratified_split(y: np.ndarray, test_size: float, seed: int):
    """Indices (train, test), ``test_size`` of every class in the test part (no sklearn)."""
    rng = np.random.default_rng(seed)
    tr, te = [], []
    for c in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == c))
        k = int(round(test_size * idx.size))
        te.append(idx[:k])
        tr.append(idx[k:])
    return np.sort(np.concatenate(tr)), np.sort(np.concatenate(te))


# ----------------------------------------------------------------------------- model
class FusionHead(nn.Module):
    """Per-modality projection -> modality tokens -> multi-head self-attention -> mean-pool -> MLP.

    ``mean``/``std`` (per modality, from the completed training rows) standardise the inputs
    inside the model, so that it takes raw (completed) embeddings."""

    def __init__(self, dims: Sequence[int], n_classes: int, mean: Sequence[torch.Tensor],
                 std: Sequence[torch.Tensor], width: int = 64, heads: int = 4, hidden: int = 128,
                 dropout: float = 0.1):
        super().__init__()
        self.M = len(dims)
        for m in range(self.M):
            self.register_buffer(f"mean_{m}", mean[m].float().clone())
            self.register_buffer(f"std_{m}", std[m].float().clone())
        self.proj = nn.ModuleList(nn.Linear(d, width) for d in dims)
        self.modality_emb = nn.Parameter(torch.randn(self.M, width) * 0.02)
        self.attn = nn.MultiheadAttention(width, heads, dropout=dropout, batch_first=True)
        self.norm = nn.LayerNorm(width)
        self.mlp = nn.Sequential(nn.Linear(width, hidden), nn.GELU(), nn.Dropout(dropout),
                                 nn.Linear(hidden, n_classes))

    def forward(self, views: List[torch.Tensor]) -> torch.Tensor:
        tokens = torch.stack([
            self.proj[m]((views[m].float() - getattr(self, f"mean_{m}")) / getattr(self, f"std_{m}"))
            for m in range(self.M)], dim=1) + self.modality_emb          # (B, M, width)
        attended, _ = self.attn(tokens, tokens, tokens, need_weights=False)
        h = self.norm(tokens + attended)
        return self.mlp(h.mean(dim=1))


def f1_micro(y_true: torch.Tensor, y_pred: torch.Tensor, n_classes: int) -> float:
    """Micro-averaged F1 from per-class TP/FP/FN counts (equals accuracy for single-label data)."""
    tp = fp = fn = 0
    for c in range(n_classes):
        t, p = y_true == c, y_pred == c
        tp += int((t & p).sum())
        fp += int((~t & p).sum())
        fn += int((t & ~p).sum())
    return 2 * tp / max(2 * tp + fp + fn, 1)


# ----------------------------------------------------------------------------- main
def run(quick: bool = False, rate: float = 0.5, n_clusters: int = 40, completion: str = "soft",
        epochs: Optional[int] = None, seed: int = 0, batch_size: int = 64, verbose: bool = True) -> float:
    """The whole pipeline; returns the test F1-micro."""
    t_start = time.perf_counter()
    torch.manual_seed(seed)
    say = print if verbose else (lambda *a, **k: None)
    epochs = epochs if epochs is not None else (8 if quick else 15)

    # 1. frozen embeddings, with missing modalities (NaN in the hidden slots)
    data, y_np = load_mfeat(return_X_y=True)                   # 6 views, float32
    n, M = y_np.shape[0], len(data)
    mask_np = missing_rate_mask(n, M, rate, seed=seed)
    views = [torch.from_numpy(np.where(mask_np[:, m:m + 1], x, np.nan).astype(np.float32))
             for m, x in enumerate(data)]
    mask = torch.from_numpy(mask_np)
    y = torch.from_numpy(y_np)
    n_classes = int(y.max()) + 1

    # 2. split; fit ul4m4 on the training rows only
    tr_np, te_np = stratified_split(y_np, 0.3, seed)
    tr, te = torch.from_numpy(tr_np), torch.from_numpy(te_np)
    train_views, test_views = [v[tr] for v in views], [v[te] for v in views]
    imp = ul4m4.UL4M4Imputer(n_clusters, completion=completion, random_state=seed)
    imp.fit(train_views, mask=mask[tr])
    say(f"ul4m4: fitted K={n_clusters} on {len(tr)} training rows, {M} modalities, "
        f"{100 * (1 - mask_np[tr_np].mean()):.0f}% of the slots missing ({imp.n_iter_} iterations)")

    # 3. complete: the test set in one call (tensors in -> tensors out) ...
    test_filled, imputed, unfilled = imp.transform(test_views, mask=mask[te], return_masks=True)
    assert all(isinstance(v, torch.Tensor) and v.dtype == torch.float32 for v in test_filled)
    assert not any(torch.isnan(v).any() for v in test_filled)
    say(f"ul4m4: completed {int(imputed.sum())} test slots ({int(unfilled.sum())} unfilled)")
    # ... and the training set batch by batch, in the DataLoader's collate_fn
    train_all = imp.transform(train_views, mask=mask[tr])     # only for the normalisation stats
    mean = [v.mean(dim=0) for v in train_all]
    std = [torch.where(s > 1e-8, s, torch.ones_like(s)) for s in (v.std(dim=0, unbiased=False) for v in train_all)]
    gen = torch.Generator().manual_seed(seed)
    loader = DataLoader(MaskedViews(train_views, mask[tr], y[tr]), batch_size=batch_size, shuffle=True,
                        generator=gen, collate_fn=CompletingCollate(imp))
    # batch-wise completion gives exactly the rows of whole-set completion
    b_views, _, _, b_idx = next(iter(loader))
    assert all(torch.equal(bv, full[b_idx]) for bv, full in zip(b_views, train_all))

    # 4. the fusion head, trained on the completed embeddings
    model = FusionHead([v.shape[1] for v in views], n_classes, mean, std)
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=1e-4)
    loss_fn = nn.CrossEntropyLoss()
    for epoch in range(epochs):
        model.train()
        total, count = 0.0, 0
        for b_views, _, b_y, _ in loader:
            opt.zero_grad()
            loss = loss_fn(model(b_views), b_y)
            loss.backward()
            opt.step()
            total += loss.item() * b_y.shape[0]
            count += b_y.shape[0]
        if verbose and (epoch == epochs - 1 or epoch % max(1, epochs // 5) == 0):
            say(f"epoch {epoch + 1:3d}/{epochs}  train loss {total / count:.4f}")

    # 5. test F1-micro
    model.eval()
    with torch.no_grad():
        pred = model(test_filled).argmax(dim=1)
    f1 = f1_micro(y[te], pred, n_classes)
    say(f"test F1-micro: {f1:.4f}  ({len(te)} test rows, {completion} completion, "
        f"{time.perf_counter() - t_start:.1f} s)")
    return f1


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="few epochs (a fast smoke run)")
    p.add_argument("--rate", type=float, default=0.5, help="fraction of missing modality slots")
    p.add_argument("--clusters", type=int, default=40, help="K of ul4m4")
    p.add_argument("--completion", choices=("greedy", "soft"), default="soft")
    p.add_argument("--epochs", type=int, default=None, help="training epochs (default 15; 8 with --quick)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    run(quick=args.quick, rate=args.rate, n_clusters=args.clusters, completion=args.completion,
        epochs=args.epochs, seed=args.seed)
    return 0


if __name__ == "__main__":
    sys.exit(main())
