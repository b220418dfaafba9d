"""Faster frozen linears on a CPU: oneDNN with prepacked weights (``torch.ops.mkldnn``), else an LM-head hook
that keeps its input canonical so torch does not copy the weight per row."""

from __future__ import annotations

from maximalcai.patches import require

require(__name__)


def speed_up_frozen(model, dtype, device: str) -> None:
    """Apply the right one to a frozen inference model: oneDNN linears for float32 on a CPU with oneDNN,
    else the LM-head hook."""
    import torch

    if device == "cpu" and dtype == torch.float32 and onednn_available():
        use_onednn_linears(model)
        return
    head = model.get_output_embeddings()
    if head is not None:
        head.register_forward_pre_hook(contiguous_input)


def onednn_available() -> bool:
    import torch

    return torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")


def use_onednn_linears(model) -> int:
    """Run every plain float32 ``nn.Linear`` of a frozen CPU model through oneDNN with prepacked weights.

    On a 2-core AVX2 host, MKL's sgemm computes Gemma 3's [262144, 640] LM head at 30-50 GFLOP/s; oneDNN's
    kernel on a weight reordered once is 2.2-2.5x faster there, and 1.2-1.8x on the layers' shapes at
    decoding batch sizes (docs/KNOWN_BUGS_AND_FIXES.md). Results are float32, equal up to summation order
    (tests/test_backends.py). Returns how many layers were converted.
    """
    import torch

    class OneDnnLinear(torch.nn.Module):
        def __init__(self, linear) -> None:
            super().__init__()
            self.in_features, self.out_features = linear.in_features, linear.out_features
            self.register_buffer(
                "packed", torch.ops.mkldnn._reorder_linear_weight(linear.weight.detach()), persistent=False
            )
            self.register_buffer("bias", None if linear.bias is None else linear.bias.detach(), persistent=False)

        def forward(self, hidden):
            flat = hidden.reshape(-1, self.in_features).contiguous()
            out = torch.ops.mkldnn._linear_pointwise(flat, self.packed, self.bias, "none", [], "")
            return out.reshape(*hidden.shape[:-1], self.out_features)

    converted = 0
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if type(child) is torch.nn.Linear and child.weight.dtype == torch.float32:
                setattr(parent, name, OneDnnLinear(child))
                converted += 1
    return converted


def contiguous_input(module, args):
    """The LM head receives ``hidden[:, -k:, :]``, a strided view. Without gradients, torch.matmul folds a
    3-D input into one matrix product only when its strides are canonical; otherwise it broadcasts the
    [vocab, hidden] weight over the batch, copying it once per row (5.4 GB for 16 rows of Gemma 3's 262k
    vocabulary, 10x slower). ``.contiguous()`` is not enough: for one row ([1, 1, hidden]) it is a no-op that
    keeps the odd stride. A fresh copy (a few kB) keeps it one ``mm`` (docs/KNOWN_BUGS_AND_FIXES.md)."""
    import torch

    return (args[0].clone(memory_format=torch.contiguous_format), *args[1:])
