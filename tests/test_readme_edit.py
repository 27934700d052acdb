"""The README's `ndcore.edit` snippet runs as written (it defines its own G and z), and its
edit really changes the images."""

import re
from pathlib import Path

import pytest
import torch

README = Path(__file__).resolve().parent.parent / "README.md"


def edit_snippet() -> str:
    """The one ```python block of the README that calls ndcore.edit, dedented."""
    blocks = re.findall(r"^( *)```python\n(.*?)^\1```", README.read_text(), re.S | re.M)
    found = [(indent, body) for indent, body in blocks if "ndcore.edit(" in body]
    assert len(found) == 1, f"expected one README snippet with ndcore.edit, found {len(found)}"
    indent, body = found[0]
    return "\n".join(line[len(indent):] for line in body.splitlines()) + "\n"


def test_readme_edit_snippet_runs_as_written():
    pytest.importorskip("gan_face_generate")  # the shipped dcgan-faces generator's weights
    code = edit_snippet()
    scope: dict = {}
    torch.manual_seed(0)
    exec(compile(code, f"{README}:ndcore.edit snippet", "exec"), scope)  # noqa: S102
    G, z, images = scope["G"], scope["z"], scope["images"]
    assert images.shape == (z.shape[0], 3, 64, 64)
    with torch.no_grad():
        plain = G(z)
    assert torch.isfinite(images).all()
    assert not torch.equal(images.detach(), plain), "the snippet's edit changed nothing"
