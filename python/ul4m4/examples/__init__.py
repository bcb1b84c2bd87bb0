"""Runnable examples, installed with the package.

``python -m ul4m4.examples.torch_fusion [--quick]``
    PyTorch: fit the imputer on the training split of the shipped UCI Multiple Features
    data with missing views, complete batches in a DataLoader ``collate_fn``, train an
    attention fusion head, report test F1-micro (needs torch).
``python -m ul4m4.examples.large_data [--quick]``
    Data larger than memory: memory-mapped ``.npy`` files fitted with
    ``ul4m4.outofcore.fit_streaming`` and completed chunk by chunk with
    ``transform_to_npy``; then the same fit on a local Dask cluster (needs dask and
    distributed for that part).

The sources are the files next to this one (``python -c "import ul4m4.examples as e;
print(e.__path__[0])"`` prints where).
"""
