"""The README's "Python API" example runs as written (in a temporary directory)."""

from __future__ import annotations

import re
from pathlib import Path

import xarray as xr

README = Path(__file__).resolve().parents[2] / "README.md"


def test_python_api_example_runs(tmp_path, monkeypatch, capsys):
    text = README.read_text()
    section = text[text.index("## Python API"):]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    monkeypatch.chdir(tmp_path)
    exec(compile(code, "README.md", "exec"), {"__name__": "readme_example"})
    out = capsys.readouterr().out
    assert "km3 after 50 a" in out and "gradient:" in out
    gradient = float(out.split("gradient:")[1])
    assert gradient > 0  # more flow (larger A) moves the glacier further from H0
    with xr.open_dataset(tmp_path / "valley.nc") as ds:
        assert ds.thickness.shape == (6, 60, 40) and ds.attrs["Conventions"] == "CF-1.8"


def test_public_api_names():
    import glacier

    for name in glacier.__all__:
        assert getattr(glacier, name) is not None, name
    assert glacier.simulate is glacier.solver.simulate
