"""Naming the CPU a model ran on, what it can do, and the libraries that computed on it: export records,
``toxdistill bench``, ``export --auto``, the frontier and the report record them, because which engine is fastest,
whether int8 holds its accuracy and the last digits of every score depend on them."""

from __future__ import annotations

import platform
from pathlib import Path

CPUINFO = Path("/proc/cpuinfo")


def cpu_name() -> str:
    """The CPU's model name as Linux reports it (``/proc/cpuinfo``), else what ``platform`` knows."""
    try:
        for line in CPUINFO.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


# The vector and matrix extensions that decide which engine and precision is fastest.
FEATURES = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_bf16", "amx_int8")
# The int8 dot-product instructions (u8 × s8 summed straight into int32). Without one, x86 int8 kernels multiply
# with AVX2's vpmaddubsw, whose int16 pair sums saturate on large weights × activations.
INT8_DOT = ("avx512_vnni", "avx_vnni", "amx_int8")


# Native bf16 arithmetic. Elsewhere torch emulates bf16 with fp32 work plus conversions, slower than fp32 itself.
NATIVE_BF16 = ("avx512_bf16", "amx_bf16")


def cpu_flags() -> list[str]:
    """Every flag the CPU lists (Linux ``/proc/cpuinfo``; empty elsewhere)."""
    try:
        text = CPUINFO.read_text()
    except OSError:
        return []
    return next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), [])


def cpu_features() -> list[str]:
    """Which of ``FEATURES`` the CPU's flags list (empty where the flags cannot be read)."""
    flags = set(cpu_flags())
    return [f for f in FEATURES if f in flags]


def int8_dot(features: list[str] | None = None) -> list[str]:
    """The int8 dot-product instructions (``INT8_DOT``) among ``features`` (default: this CPU's)."""
    have = set(cpu_features() if features is None else features)
    return [f for f in INT8_DOT if f in have]


def native_bf16(features: list[str] | None = None) -> bool:
    """Whether ``features`` (default: this CPU's) include a native bf16 instruction set (``NATIVE_BF16``)."""
    have = set(cpu_features() if features is None else features)
    return any(f in have for f in NATIVE_BF16)


def cpu_kind(features: list[str] | None = None) -> str:
    """The CPU in one phrase for the reports: its name and the features that decide the engines
    (``AMD EPYC (avx2, avx512f, avx512_vnni, avx512_bf16)``)."""
    have = cpu_features() if features is None else features
    return f"{cpu_name()} ({', '.join(have) if have else 'no AVX2 or newer listed'})"


# The libraries whose kernels compute the numbers: a new version may change speeds and the last digits of scores.
LIBRARIES = ("torch", "transformers", "onnxruntime", "openvino")


def library_versions() -> dict[str, str]:
    """The installed versions of ``LIBRARIES`` (those installed), read without importing them."""
    import importlib.metadata

    out = {}
    for name in LIBRARIES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return out


def machine_facts() -> dict:
    """What the report says the numbers were computed on: the CPU, its features and the library versions."""
    return {"cpu": cpu_name(), "cpu_features": cpu_features(), "versions": library_versions()}
