"""What a training run records of the software and settings that made it, and how another
run's differ: a colleague's numbers are reproduced bit for bit only with the same code, library
versions, torch thread count and device (float sums are added in another order otherwise), so
a resume or a rerun of a run's config.yaml says where any of them differ."""
from __future__ import annotations

import platform
from typing import Optional

# The libraries whose versions change training's numbers: torch computes, OpenCV decodes and
# resizes the crops, numpy and scikit-image score the validation images.
LIBS = ("torch", "numpy", "opencv", "scikit_image")
_NAMES = {"sharpen": "sharpen", "code": "commit", "python": "python", "torch": "torch",
          "numpy": "numpy", "opencv": "opencv", "scikit_image": "scikit-image",
          "onnxruntime": "onnxruntime", "ai_edge_litert": "ai-edge-litert",
          "nvidia_modelopt": "nvidia-modelopt",
          "torch_threads": "torch threads", "device": "device"}


def run_environment(device=None, libs: tuple[str, ...] = LIBS) -> dict:
    """This process's: project version and git commit (with `+changes` where tracked files had
    uncommitted changes), Python's and `libs`' versions (runtime.host.LIBRARIES' names), torch's
    thread count and the device (`cpu` or the GPU's name)."""
    import torch

    from runtime.host import code_info, library_versions
    code = code_info()
    env: dict = {"sharpen": code.get("version")}
    if code.get("commit"):
        env["code"] = code["commit"][:12] + ("+changes" if code.get("dirty") else "")
    env["python"] = platform.python_version()
    env.update(library_versions(libs))
    env["torch_threads"] = torch.get_num_threads()
    kind = "cpu" if device is None else torch.device(device).type
    # A GPU by its name (another card sums in another order); mps as itself, not as cpu.
    env["device"] = torch.cuda.get_device_name(device) if kind == "cuda" else kind
    return env


def describe(env: dict) -> str:
    """One line for train.log: `sharpen 0.1.0 (commit 26c08ca1b2c3), python 3.11.9, torch
    2.5.1, ..., 2 torch threads, cpu`."""
    parts = []
    for k, v in env.items():
        if k == "code":
            continue
        if k == "sharpen":
            parts.append(f"sharpen {_shown(k, v)}"
                         + (f" (commit {env['code']})" if env.get("code") else ""))
        elif k == "torch_threads":
            parts.append(f"{v} torch thread{'' if v == 1 else 's'}")
        elif k == "device":
            parts.append(str(v))
        else:
            parts.append(f"{_NAMES.get(k, k)} {_shown(k, v)}")
    return ", ".join(parts)


def environment_changes(then: Optional[dict], now: dict) -> list[str]:
    """Where `now` differs from `then`, recorded by a run, as `torch 2.4.0 -> 2.5.1`; empty
    where they agree or `then` records nothing (a checkpoint of an older version)."""
    if not isinstance(then, dict):
        return []
    said = []
    for k, name in _NAMES.items():
        if k in then and then[k] != now.get(k):
            said.append(f"{name} {_shown(k, then[k])} -> {_shown(k, now.get(k))}")
    return said


def _shown(key: str, value) -> str:
    """A recorded value in words: None is a library not installed, or code outside a git
    checkout, or without git (a copied or pip-installed project), not the word None."""
    if value is not None:
        return str(value)
    return {"code": "unknown (no git commit here)", "sharpen": "unknown"}.get(key,
                                                                             "not installed")


def same_code(env: dict) -> str:
    """How sure `same code` is, in words, for a run whose recorded `env` matches this one's: a
    commit with `+changes` on both sides may carry different changes; no commit, the version
    alone."""
    code = env.get("code")
    if not code:
        return f"the same version (sharpen {_shown('sharpen', env.get('sharpen'))}; no commit " \
               "recorded)"
    if code.endswith("+changes"):
        return (f"the same commit ({code[:-len('+changes')]}), both with uncommitted changes "
                "that are not compared")
    return "same code"
