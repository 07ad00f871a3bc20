"""Let `pytorch_grad_cam` import where torchvision cannot.

`grad-cam` (pytorch-grad-cam) imports torchvision at module level in three helpers that the CAM
methods never call: `sess.py` (`transforms.functional.resize`), `utils/image.py` (`Compose`,
`Normalize`, `ToTensor` for `preprocess_image`) and `utils/model_targets.py` (`ops.box_iou` for
detection targets). torchvision's wheels on PyPI are built against PyTorch's CUDA build and fail
to import beside the CPU build ("operator torchvision::nms does not exist"). When torchvision
does not import, `install()` registers a stand-in module whose names raise if anything calls
them, so a CAM computation can never silently depend on it.
"""

from __future__ import annotations

import sys
import types


def _unavailable(name: str):
    def call(*_args: object, **_kwargs: object) -> None:
        raise RuntimeError(f"torchvision.{name} is not available in the cross-check environment")

    call.__name__ = name.rsplit(".", 1)[-1]
    return call


def install() -> bool:
    """Register the stand-in unless a working torchvision imports; True if it was registered."""
    try:
        import torchvision  # noqa: F401
    except Exception:  # missing, or the CUDA wheel beside the CPU build of PyTorch
        for name in [n for n in sys.modules if n == "torchvision" or n.startswith("torchvision.")]:
            del sys.modules[name]
    else:
        return False
    root = types.ModuleType("torchvision")
    transforms = types.ModuleType("torchvision.transforms")
    functional = types.ModuleType("torchvision.transforms.functional")
    ops = types.ModuleType("torchvision.ops")
    for name in ("Compose", "Normalize", "ToTensor"):
        setattr(transforms, name, _unavailable(f"transforms.{name}"))
    functional.resize = _unavailable("transforms.functional.resize")
    ops.box_iou = _unavailable("ops.box_iou")
    transforms.functional = functional
    root.transforms, root.ops = transforms, ops
    sys.modules.update(
        {
            "torchvision": root,
            "torchvision.transforms": transforms,
            "torchvision.transforms.functional": functional,
            "torchvision.ops": ops,
        }
    )
    return True
