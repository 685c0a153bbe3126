"""Candidate ops (surrogate blocks): the registry, the base classes and the built-in ops."""
from .base import ResnetOp, TransformerOp
from .registry import OpSpec, build_op, get_op, register_op, registered_ops

__all__ = ["OpSpec", "ResnetOp", "TransformerOp", "build_op", "get_op", "register_op", "registered_ops"]
