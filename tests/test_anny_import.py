"""anny imported without TorchDynamo: nothing loads it, and roma behaves as before.

Each check runs in a fresh interpreter, since this test process may have
loaded ``torch._dynamo`` already (then :func:`import_anny` imports as usual).
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

pytest.importorskip("anny")

# roma's jvp through special_procrustes, traced by TorchDynamo under a functorch
# transform: the one path on which roma calls the functions it wraps in
# torch._dynamo.disable at import. backend="eager" traces without compiling.
_TRACED_JVP = """
import torch, roma
torch.manual_seed(0)
M, dM = torch.randn(2, 4, 3, 3, dtype=torch.float64)
def jvp(M, dM):
    return torch.func.jvp(roma.special_procrustes, (M,), (dM,))
out, tangent = torch.compile(jvp, backend="eager")(M, dM)
ref_out, ref_tangent = jvp(M, dM)
"""


def _run(code: str) -> str:
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(code)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def test_import_anny_leaves_dynamo_unloaded_and_roma_unchanged() -> None:
    deferred = textwrap.dedent("""
        import sys, torch
        from openhmr.body.anny_import import import_anny
        anny = import_anny()
        assert "anny.paths" in sys.modules and hasattr(anny, "Anny")
        assert "torch._dynamo" not in sys.modules and "_dynamo" not in vars(torch)

        import roma.mappings as mappings
        from roma.mappings import _ProcrustesManualDerivatives as Procrustes
        M = torch.randn(5, 3, 3, dtype=torch.float64)
        # Eagerly, the deferred wrapper gives what the bare function gives ...
        got = mappings._procrustes_apply_eager(M, True, 1e-5)
        expected = Procrustes.apply(M, True, 1e-5)
        assert all(torch.equal(a, b) for a, b in zip(got, expected, strict=True))
        # ... and its first call has loaded the real TorchDynamo, in its place.
        real = sys.modules["torch._dynamo"]
        assert type(real).__name__ == "module" and torch._dynamo is real
    """)
    check = "assert torch.equal(out, ref_out) and torch.equal(tangent, ref_tangent)\n"
    report = "print('ok', repr(float(tangent.abs().sum())), repr(float(out.sum())))\n"
    ours = _run(deferred + _TRACED_JVP + check + report)
    plain = _run("import anny\n" + _TRACED_JVP + check + report)
    # Traced, roma gives the same tangents as with anny imported the usual way.
    assert ours.startswith("ok") and ours == plain


def test_stand_in_loads_the_real_module_for_anything_else() -> None:
    _run("""
        import importlib, sys, torch
        from openhmr.body.anny_import import deferred_dynamo
        with deferred_dynamo():
            stand_in = importlib.import_module("torch._dynamo")
            assert type(stand_in).__name__ == "_DeferredDynamo"
            # Any other attribute is the real module's, which is then in place.
            is_compiling = stand_in.is_compiling
            real = sys.modules["torch._dynamo"]
            assert real is not stand_in and is_compiling is real.is_compiling
        assert sys.modules["torch._dynamo"] is real and torch._dynamo is real
        # Already loaded: the block changes nothing.
        with deferred_dynamo():
            assert sys.modules["torch._dynamo"] is real
    """)
