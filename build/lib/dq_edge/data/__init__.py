"""Datasets: built-in emoji64 / fmnist and image folders, as uint8 ImageSets with resumable batch order."""

from __future__ import annotations

from dq_edge.data.batches import Batch, BatchOrder, iterate_in_order, take, to_float, to_uint8
from dq_edge.data.imageset import ImageSet
from dq_edge.data.registry import BUILTINS, load_dataset, prepare_dataset

__all__ = ["Batch", "BatchOrder", "BUILTINS", "ImageSet", "iterate_in_order", "load_dataset", "prepare_dataset", "take", "to_float", "to_uint8"]
