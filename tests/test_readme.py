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


TEST_COMMAND = "pip install -e '.[test]' && pytest -q"


def test_readme_test_command_is_what_ci_runs():
    readme = open(os.path.join(ROOT, "README.md")).read()
    ci = open(os.path.join(ROOT, ".ci", "run")).read()
    assert f"\n    {TEST_COMMAND}\n" in readme
    assert ci.rstrip().splitlines()[-1] == TEST_COMMAND
