"""Writes a safetensors file of quantised weights for pack_ratio_test.cc.

Usage: quantize_safetensors.py SRC.safetensors OUT.safetensors

Every floating-point tensor of SRC (a real model's weights) is quantised
with torch the way inference stacks store them: int8 with a per-output-
channel symmetric scale (round(w / scale) clamped to [-127, 127]; the codes
are stored, the scales beside them as F32), and float8 e4m3 and e5m2 copies
(tensor.to(torch.float8_e4m3fn / float8_e5m2)). The file is written by the
official safetensors package.
"""
import sys

import torch
from safetensors.torch import load_file, save_file


def main() -> None:
    src, out = sys.argv[1], sys.argv[2]
    tensors = {}
    for name, t in sorted(load_file(src).items()):
        if not t.is_floating_point() or t.numel() < 16:
            continue
        w = t.to(torch.float32)
        if w.dim() < 2:
            w = w.reshape(1, -1)
        w = w.reshape(w.shape[0], -1)
        scales = w.abs().amax(dim=1).clamp(min=1e-12) / 127.0
        q = torch.clamp(torch.round(w / scales[:, None]), -127, 127).to(torch.int8)
        tensors[name + ".int8"] = q.contiguous()
        tensors[name + ".scale"] = scales.contiguous()
        tensors[name + ".e4m3"] = w.to(torch.float8_e4m3fn).contiguous()
        tensors[name + ".e5m2"] = w.to(torch.float8_e5m2).contiguous()
    if not tensors:
        sys.exit("no floating-point tensors in " + src)
    save_file(tensors, out)


if __name__ == "__main__":
    main()
