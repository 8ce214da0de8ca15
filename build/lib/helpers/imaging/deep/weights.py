"""Reading local network weights (state dicts) safely: shared by the deep-feature and super-resolution networks."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch

__all__ = ["read_state_dict"]


def read_state_dict(path: Path, error: type[Exception]) -> dict[str, torch.Tensor]:
    """Load a state dict from a local file, unwrapping training checkpoints and ``module.`` prefixes.

    Parameters
    ----------
    path : Path
        A file written by ``torch.save(model.state_dict(), path)`` (or a checkpoint holding it under ``state_dict``).
    error : exception class
        Raised (with the path and the fix) when the file cannot be read or holds no state dict.
    """
    try:
        # weights_only: a state dict is plain tensors; refusing pickled code keeps loading safe.
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for corrupt or non-tensor files
        raise error(
            f"cannot read weights {path}: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}; "
            "save them with torch.save(model.state_dict(), path)"
        ) from None
    if isinstance(obj, Mapping) and "state_dict" in obj and isinstance(obj["state_dict"], Mapping):
        obj = obj["state_dict"]  # training checkpoints (MedicalNet's among them) wrap the state dict
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise error(f"{path} does not hold a state dict (a mapping of parameter names to tensors)")
    # Weights saved from nn.DataParallel prefix every key with 'module.'.
    return {k.removeprefix("module."): v for k, v in obj.items()}
