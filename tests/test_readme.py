"""The README's Python example runs as written."""
import os
import re

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_readme_example_runs(capsys):
    src = open(os.path.join(ROOT, "README.md")).read()
    (code,) = re.findall(r"```python\n(.*?)```", src, re.S)
    exec(compile(code, "README.md", "exec"), {})
    printed = capsys.readouterr().out.strip()
    assert printed.startswith("[") and float(printed.strip("[]")) > 0
