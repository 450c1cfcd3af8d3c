"""Where fine-tuning runs and how it is sized: the one place that looks at the hardware.

:func:`choose_device` turns :class:`~ragops.config.FinetuneConfig`'s ``device``, ``batch_size``
and ``grad_accum`` (0 = automatic) into a :class:`TrainDevice` the trainers read:

- ``device=auto``: CUDA when ``torch.cuda.is_available()``, else Apple's MPS, else the CPU. An
  explicit ``cuda`` or ``mps`` the machine does not have is an error, not a silent CPU run.
- Precision: bf16 on a GPU that supports it (the frozen base in bf16, LoRA weights in fp32 under
  autocast); fp32 everywhere else (a GPU without bf16 and the CPU, where bf16 autocast is slow).
- ``batch_size=0``: on CUDA from the memory free on the device. A 135M-parameter model with LoRA
  and no gradient checkpointing needs about 1 GiB of activations per 1,024-token sequence in bf16
  (30 layers x 576 hidden: ~0.6 MB per token, plus the MLP and the loss), so the rule is half the
  free memory in GiB divided by ``max_length / 1024``, rounded down to a power of two, capped at
  16 (about one optimizer update's worth of examples) and at ``8192 // max_length`` (SFT packs a
  batch into one row whose attention mask is ``(batch x max_length)^2``: see
  :mod:`ragops.finetune.train`), at least 1. MPS: 4. CPU: 2.
- ``grad_accum=0``: ``ceil(16 / batch_size)``, about 16 examples per optimizer update.
- Packing (SFT only): on a GPU; the CPU and MPS train padded batches.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from ragops.config import FinetuneConfig
from ragops.config.settings import SettingsError
from ragops.cpu import available_cores

#: examples per optimizer update that ``grad_accum=0`` aims for
EXAMPLES_PER_UPDATE = 16
#: GiB of activations per sequence of this many tokens (135M model, LoRA, bf16, no checkpointing)
GIB_PER_SEQUENCE, SEQUENCE_TOKENS = 1.0, 1024
#: most tokens in one packed (padding-free) micro-batch: the SDPA mask is quadratic in them
MAX_PACKED_TOKENS = 8192
CPU_BATCH, MPS_BATCH, MAX_GPU_BATCH = 2, 4, 16


class DeviceUnavailableError(SettingsError):
    """finetune_device names a device this machine does not have."""


@dataclass(frozen=True)
class TrainDevice:
    kind: str  # "cuda" | "mps" | "cpu"
    name: str  # "NVIDIA H200", "cpu (2 cores)"
    memory_gb: float | None  # total device memory; None on the CPU and MPS
    bf16: bool  # bf16 autocast (and a bf16 base); else fp32
    batch_size: int  # examples (packed rows with packing) per device step
    grad_accum: int
    attn_implementation: str  # "sdpa"
    packing: bool  # SFT packs sequences (best-fit, padding-free); DPO never does

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def torch_dtype(self):
        import torch

        return torch.bfloat16 if self.bf16 else torch.float32


def _kind(requested: str) -> str:
    import torch

    cuda = torch.cuda.is_available()
    mps = bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())
    if requested == "auto":
        return "cuda" if cuda else "mps" if mps else "cpu"
    if requested == "cuda" and not cuda:
        raise DeviceUnavailableError(
            "finetune_device=cuda but torch sees no CUDA GPU (torch.cuda.is_available() is False; a CPU-only "
            f"torch {torch.__version__}?): set finetune_device=auto or cpu, or run on a GPU machine",
            "finetune_device", requested)
    if requested == "mps" and not mps:
        raise DeviceUnavailableError(
            "finetune_device=mps but torch.backends.mps is not available: set finetune_device=auto or cpu",
            "finetune_device", requested)
    return requested


def gpu_batch_size(free_gb: float, max_length: int) -> int:
    """The ``batch_size=0`` rule on CUDA (see the module docstring)."""
    per_sequence = GIB_PER_SEQUENCE * max(1, max_length) / SEQUENCE_TOKENS
    fits = int(0.5 * free_gb / per_sequence)
    cap = min(MAX_GPU_BATCH, max(1, MAX_PACKED_TOKENS // max(1, max_length)))
    n = max(1, min(fits, cap))
    return 1 << (n.bit_length() - 1)  # a power of two


def choose_device(cfg: FinetuneConfig, max_length: int | None = None) -> TrainDevice:
    """The device, precision and batch geometry for ``cfg`` (``max_length`` defaults to ``cfg.max_length``)."""
    import torch

    max_length = max_length or cfg.max_length
    kind = _kind(cfg.device)
    memory_gb: float | None = None
    if kind == "cuda":
        props = torch.cuda.get_device_properties(0)
        name, memory_gb = props.name, round(props.total_memory / 2**30, 1)
        free, _total = torch.cuda.mem_get_info(0)
        bf16 = torch.cuda.is_bf16_supported()
        auto_batch = gpu_batch_size(free / 2**30, max_length)
        packing = True
    elif kind == "mps":
        name, bf16, auto_batch, packing = "mps (Apple GPU)", False, MPS_BATCH, False
    else:
        name, bf16, auto_batch, packing = f"cpu ({available_cores()} cores)", False, CPU_BATCH, False
    batch_size = cfg.batch_size if cfg.batch_size > 0 else auto_batch
    grad_accum = cfg.grad_accum if cfg.grad_accum > 0 else math.ceil(EXAMPLES_PER_UPDATE / batch_size)
    return TrainDevice(kind=kind, name=name, memory_gb=memory_gb, bf16=bf16, batch_size=batch_size,
                       grad_accum=grad_accum, attn_implementation="sdpa", packing=packing)


__all__ = ["DeviceUnavailableError", "TrainDevice", "choose_device", "gpu_batch_size"]
