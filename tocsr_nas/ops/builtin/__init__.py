"""The built-in ops; importing this package registers them."""
from . import attention, passthrough, resnet  # noqa: F401

__all__ = ["attention", "passthrough", "resnet"]
