"""Drop-in SINGA: the `singa` alias, `singa.snapshot`, the `singax` command, and
SINGA-style scripts (tests/dropin/) run unchanged through `singax run`."""
import importlib
import os
import struct
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import singax
from singax import cli, compat, tensor

DROPIN = os.path.join(os.path.dirname(os.path.abspath(__file__)), "dropin")


@pytest.fixture
def alias():
    """Install the alias for one test and remove every trace of it afterwards."""
    saved = {k: v for k, v in sys.modules.items() if k == "singa" or k.startswith("singa.")}
    for k in saved:
        del sys.modules[k]
    finders = list(sys.meta_path)
    yield compat.install_as_singa()
    for k in [k for k in sys.modules if k == "singa" or k.startswith("singa.")]:
        del sys.modules[k]
    sys.modules.update(saved)
    sys.meta_path[:] = finders


# --- install_as_singa ----------------------------------------------------------------

def test_alias_resolves_to_singax_modules(alias):
    import singa
    from singa import tensor as t, autograd as ag
    import singa.opt as o
    from singa.tensor import Tensor
    assert singa is alias and singa.__version__ == singax.__version__
    assert t is singax.tensor and ag is singax.autograd and o is singax.opt
    assert Tensor is singax.tensor.Tensor
    for name in compat.SUBMODULES:
        assert sys.modules[f"singa.{name}"] is importlib.import_module(f"singax.{name}")
        assert getattr(singa, name) is sys.modules[f"singa.{name}"]
    # a deeper module, not registered up front, resolves through the finder to the same object
    import singa.autograd._tape as tape
    assert tape is singax.autograd._tape
    from singa.autograd import backward
    assert backward is singax.autograd.backward
    assert compat.install_as_singa() is singa  # idempotent
    assert sum(isinstance(f, compat._AliasFinder) for f in sys.meta_path) == 1


def test_alias_singa_wrap_and_missing_modules(alias):
    from singa import singa_wrap
    import singa.singa_wrap as sw
    assert sw is singa_wrap
    assert (singa_wrap.kFloat32, singa_wrap.kFloat16, singa_wrap.kInt) == \
        (tensor.float32, tensor.float16, tensor.int32)
    assert singa_wrap.USE_DIST is False and singa_wrap.USE_PYTHON3 is True
    assert isinstance(singa_wrap.USE_CUDA, bool)
    a, b = singa_wrap.NcclIdHolder(), singa_wrap.NcclIdHolder()
    assert a.id != b.id
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module("singa.no_such_module")
    if importlib.util.find_spec("singax.sonnx") is None:
        with pytest.raises(ModuleNotFoundError):
            importlib.import_module("singa.sonnx")
    else:
        assert importlib.import_module("singa.sonnx") is importlib.import_module("singax.sonnx")
    with pytest.raises(AttributeError, match="no attribute 'nothing_here'"):
        alias.nothing_here


def test_alias_refuses_another_singa(alias):
    other = type(sys)("singa")
    other.__file__ = "/opt/real/singa/__init__.py"
    sys.modules["singa"] = other
    with pytest.raises(RuntimeError, match="/opt/real/singa"):
        compat.install_as_singa()


# --- singa.snapshot ---------------------------------------------------------------

def test_snapshot_roundtrip(tmp_path, alias):
    from singa import snapshot
    prefix = str(tmp_path / "params")
    values = {
        "conv1.W": np.random.default_rng(0).normal(size=(4, 1, 3, 3)).astype(np.float32),
        "steps": np.array([[3, -7], [0, 2**31 - 1]], dtype=np.int32),
        "scale": np.array([1.5, -2.25], dtype=np.float32),
    }
    writer = snapshot.Snapshot(prefix, True)
    for name, v in values.items():
        writer.write(name, tensor.Tensor(data=v, dtype=v.dtype))
    with pytest.raises(ValueError, match="duplicate"):
        writer.write("steps", tensor.Tensor(data=values["steps"], dtype=np.int32))
    writer.close()
    raw = open(prefix + ".bin", "rb").read()
    assert raw[:4] == b"sg\x01\x00"
    (key_len,) = struct.unpack_from("=Q", raw, 4)
    assert raw[12:12 + key_len] == b"conv1.W"
    desc = open(prefix + ".desc").read().splitlines()
    assert desc[1] == "conv1.W: dtype 0, shape (4, 1, 3, 3)" and len(desc) == 4

    read = snapshot.Snapshot(prefix, False).read()
    assert list(read) == list(values)
    for name, v in values.items():
        assert read[name].dtype == tensor.to_code(v.dtype)
        np.testing.assert_array_equal(tensor.to_numpy(read[name]), v)
    os.rename(prefix + ".bin", prefix + ".model")  # SINGA 1.0 file name
    assert list(snapshot.Snapshot(prefix, False).read()) == list(values)
    with pytest.raises(FileNotFoundError):
        snapshot.Snapshot(str(tmp_path / "missing"), False)


def test_snapshot_reads_unpacked_protobuf_fields(tmp_path):
    # shape [2] packed, data_type kFloat32, floats as two unpacked fixed32 fields
    proto = (b"\x0a\x01\x02" + b"\x10\x00" + b"\x25" + struct.pack("<f", 1.5)
             + b"\x25" + struct.pack("<f", -3.0))
    record = b"sg\x01\x00" + struct.pack("=Q", 1) + b"w" + struct.pack("=Q", len(proto)) + proto
    (tmp_path / "p.bin").write_bytes(record)
    out = compat.Snapshot(str(tmp_path / "p"), False).read()
    np.testing.assert_array_equal(tensor.to_numpy(out["w"]), [1.5, -3.0])
    # kDouble, packed double_data (field 5); read back as float32 (jax without x64)
    proto = b"\x08\x02" + b"\x10\x04" + b"\x2a\x10" + struct.pack("<2d", 0.25, 8.0)
    record2 = b"sg\x01\x00" + struct.pack("=Q", 1) + b"d" + struct.pack("=Q", len(proto)) + proto
    (tmp_path / "q.bin").write_bytes(record + record2)
    out = compat.Snapshot(str(tmp_path / "q"), False).read()
    assert list(out) == ["w", "d"]
    np.testing.assert_array_equal(tensor.to_numpy(out["d"]), [0.25, 8.0])
    (tmp_path / "bad.bin").write_bytes(b"xx" + record)
    with pytest.raises(ValueError, match="corrupt"):
        compat.Snapshot(str(tmp_path / "bad"), False).read()


# --- the singax command -----------------------------------------------------------

def _singax(*args, cwd=None, env=None, timeout=120):
    full_env = dict(os.environ, **(env or {}))
    return subprocess.run([sys.executable, "-m", "singax", *args], cwd=cwd, env=full_env,
                          capture_output=True, text=True, timeout=timeout)


def test_cli_version_and_usage(capsys):
    assert cli.main(["--version"]) == 0
    assert capsys.readouterr().out.startswith(f"singax {singax.__version__} (jax ")
    assert cli.main([]) == 2
    assert "usage: singax run SCRIPT.py" in capsys.readouterr().err
    assert cli.main(["frobnicate"]) == 2
    assert "unknown command 'frobnicate'" in capsys.readouterr().err
    assert cli.main(["run"]) == 2


def test_cli_missing_script(tmp_path, capsys):
    assert cli.main(["run", str(tmp_path / "missing.py")]) == 2
    err = capsys.readouterr().err
    assert "can't open file" in err and "missing.py" in err


def test_cli_explains_numpy_scalar_conversion_failures(tmp_path, capsys):
    script = tmp_path / "loss_print.py"
    if np.lib.NumpyVersion(np.__version__) >= "2.4.0":
        script.write_text("import numpy as np\nprint('loss %f' % np.zeros([1]))\n")
    else:  # the pinned numpy still converts; raise what numpy 2.4 raises
        script.write_text("raise TypeError('only 0-dimensional arrays can be converted to Python scalars')\n")
    assert cli.main(["run", str(script)]) == 1
    err = capsys.readouterr().err
    assert "only 0-dimensional arrays" in err
    assert err.strip().splitlines()[-1] == cli.NUMPY_SCALAR_HINT


@pytest.mark.skipif(np.lib.NumpyVersion(np.__version__) >= "2.4.0", reason="numpy 2.4 refuses the conversion")
def test_cli_keeps_singa_loss_prints_free_of_numpy_deprecation_noise(tmp_path):
    script = tmp_path / "loss_print.py"
    script.write_text("import numpy as np\nprint('loss %.1f' % np.full([1], 2.5))\n")
    result = _singax("run", str(script), cwd=str(tmp_path))
    assert result.returncode == 0 and result.stdout == "loss 2.5\n"
    assert "DeprecationWarning" not in result.stderr


def test_cli_runs_script_like_python(tmp_path):
    helper = tmp_path / "helper_mod.py"
    helper.write_text("VALUE = 41\n")
    script = tmp_path / "show.py"
    script.write_text(textwrap.dedent("""
        import sys
        import singa
        from singa import tensor
        import singa.autograd as autograd
        from singa.tensor import Tensor
        import singax
        import helper_mod  # found because the script's folder is first on sys.path
        assert tensor is singax.tensor and autograd is singax.autograd and Tensor is singax.tensor.Tensor
        assert __name__ == "__main__"
        print("ARGV", sys.argv)
        print("PATH0", sys.path[0])
        print("FILE", __file__)
        print("VALUE", helper_mod.VALUE + 1)
    """))
    result = _singax("run", str(script), "a", "--flag", "-x", cwd=str(os.path.dirname(DROPIN)))
    assert result.returncode == 0, result.stderr
    lines = dict(line.split(" ", 1) for line in result.stdout.splitlines())
    assert lines["ARGV"] == repr([str(script), "a", "--flag", "-x"])
    assert lines["PATH0"] == str(tmp_path)
    assert lines["FILE"] == str(script)
    assert lines["VALUE"] == "42"


def test_cli_script_traceback_in_subprocess(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("def inner():\n    raise KeyError('boom from the script')\n\ninner()\n")
    result = _singax("run", str(bad))
    assert result.returncode == 1
    assert "Traceback (most recent call last)" in result.stderr
    assert f'File "{bad}", line 2, in inner' in result.stderr
    assert "KeyError: 'boom from the script'" in result.stderr
    assert "cli.py" not in result.stderr and "runpy" not in result.stderr  # only the script's frames


@pytest.fixture
def run_in_process(monkeypatch, alias):
    """cli.main(["run", ...]) in this process, restoring sys.argv and sys.path."""
    monkeypatch.setattr(sys, "argv", list(sys.argv))
    monkeypatch.setattr(sys, "path", list(sys.path))
    return lambda *args: cli.main(["run", *map(str, args)])


def test_cli_exit_codes(tmp_path, run_in_process, capsys):
    exits = tmp_path / "exits.py"
    exits.write_text("import sys\nsys.exit(int(sys.argv[1]) if sys.argv[1].isdigit() else sys.argv[1])\n")
    with pytest.raises(SystemExit) as info:  # the script's SystemExit propagates unchanged
        run_in_process(exits, "3")
    assert info.value.code == 3
    with pytest.raises(SystemExit) as info:
        run_in_process(exits, "fatal: bad config")
    assert info.value.code == "fatal: bad config"  # Python prints it and exits with 1

    syntax = tmp_path / "syntax.py"
    syntax.write_text("x = (\n")
    assert run_in_process(syntax) == 1
    assert "SyntaxError" in capsys.readouterr().err

    raising = tmp_path / "raising.py"
    raising.write_text("import sys\nprint('args', sys.argv[1:])\nraise RuntimeError('late failure')\n")
    assert run_in_process(raising, "--x", "1") == 1
    out = capsys.readouterr()
    assert "args ['--x', '1']" in out.out
    assert "RuntimeError: late failure" in out.err and f'File "{raising}", line 3' in out.err

    ok = tmp_path / "ok.py"
    ok.write_text("import singa\nRESULT = singa.tensor.float32\n")
    assert run_in_process(ok) == 0
    assert sys.path[0] == str(tmp_path)


# --- SINGA-style scripts ---------------------------------------------------------------

def _missing(*paths):
    """The dotted names (module.attr.attr) that singax does not provide yet."""
    out = []
    for path in paths:
        module, _, attrs = path.partition(":")
        try:
            obj = importlib.import_module(module)
            for a in filter(None, attrs.split(".")):
                obj = getattr(obj, a)
        except (ImportError, AttributeError):
            out.append(path)
    return out


OPS = ("singax.autograd:matmul", "singax.autograd:add_bias", "singax.autograd:relu",
       "singax.autograd:softmax_cross_entropy", "singax.opt:SGD")
LAYERS_CNN = ("singax.layer:Conv2d", "singax.layer:BatchNorm2d", "singax.layer:MaxPool2d",
              "singax.layer:AvgPool2d", "singax.layer:Linear", "singax.autograd:cat",
              "singax.autograd:flatten")
MODEL = ("singax.model:Model.compile", "singax.model:Model.save_states", "singax.layer:ReLU",
         "singax.layer:Linear", "singax.layer:SoftMaxCrossEntropy")

SCRIPTS = [
    ("autograd_mlp.py", [], OPS),
    ("autograd_cnn.py", [], OPS + LAYERS_CNN),
    ("model_mlp.py", [], OPS + MODEL),
    ("train_cnn.py", ["--steps", "6"], OPS + MODEL + ("singax.layer:Conv2d", "singax.layer:MaxPool2d",
                                                      "singax.layer:Flatten")),
    ("char_rnn.py", ["--steps", "4", "--seq-length", "4"], OPS + MODEL + ("singax.layer:LSTM", "singax.layer:Cat",
                                                     "singax.layer:Reshape")),
    ("gan_mlp.py", ["--steps", "3", "--graph"], OPS + MODEL + ("singax.layer:Sigmoid",
                                                               "singax.layer:BinaryCrossEntropy",
                                                               "singax.opt:Optimizer.apply")),
]


@pytest.mark.parametrize("script,args,needs", SCRIPTS,
                         ids=[f"{s[0]}{' ' + ' '.join(s[1]) if s[1] else ''}" for s in SCRIPTS])
def test_dropin_script(script, args, needs, tmp_path):
    missing = _missing(*needs)
    if missing:
        pytest.skip(f"{script} needs {', '.join(missing)}, not in singax yet")
    # run from an unrelated folder: the script must find its helpers through sys.path[0]
    result = _singax("run", os.path.join(DROPIN, script), *args, cwd=str(tmp_path),
                     env={"SINGAX_DROPIN_STEPS": "4"}, timeout=600)
    assert result.returncode == 0, f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
