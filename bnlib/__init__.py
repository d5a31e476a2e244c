"""bnlib: the helper package of the executable book on why BatchNorm helps optimisation."""

__version__ = "0.1.0"


def device(spec: str = "auto"):
    """The torch device for ``spec``; ``"auto"`` picks CUDA, then MPS, then CPU."""
    import torch

    if spec != "auto":
        return torch.device(spec)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")
