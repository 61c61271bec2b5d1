"""Assemble docs/migration.md from the per-area notes in docs/migration/*.md."""
from pathlib import Path

HERE = Path(__file__).parent
ORDER = ["tensor", "ops-elementwise", "ops-shape", "ops-nn", "layer", "opt", "model", "dist",
         "dropin", "image_tool", "onnx"]

INTRO = """# Coming from SINGA

singax keeps SINGA's Python API: the same module, class, function and argument
names, the same defaults and formulas. A SINGA script runs unchanged with

    singax run train.py --your-args

(or `import singax; singax.install_as_singa()` before `from singa import ...`).
`create_cuda_gpu()` runs on the best available XLA device when there is no CUDA
GPU (one warning; `SINGAX_STRICT_DEVICE=1` makes it an error).

This page lists every deliberate difference and every SINGA bug singax does not
reproduce, area by area. The most visible ones:

- Numpy data is converted by value (SINGA reinterprets bytes); methods never alias
  their input's storage (jax arrays are immutable), except that `add_bias` still
  updates its input in place as SINGA does.
- Loss operators' gradients scale with `dy` (autodiff); SINGA ignores `dy`.
- Dropout is inverted dropout honouring its ratio, with a fresh mask every step
  from the device's key stream (SINGA scales by 1 - ratio and reseeds the device).
- Graph mode (`Model.compile(use_graph=True)`) compiles the whole step into one
  XLA program and re-traces when input shapes change (SINGA replays a buffer and
  silently reuses old shapes); Python in `train_one_batch` runs only while tracing.
- Optimizer slots are keyed by parameter identity (SINGA: by name, so two
  standalone layers' `W` share a buffer); checkpoints also store optimizer state.
- Where SINGA has a bug, singax implements the intended behaviour; each such
  place says `SINGA:` in its docstring.

"""


def main() -> None:
    parts = [INTRO]
    for name in ORDER:
        f = HERE / "migration" / f"{name}.md"
        if f.exists():
            text = f.read_text().strip()
            lines = text.splitlines()
            if lines and lines[0].startswith("# "):
                lines[0] = "#" + lines[0]
            parts.append("\n".join(lines) + f"\n\n(source: `docs/migration/{name}.md`)\n")
    (HERE / "migration.md").write_text("\n".join(parts))


if __name__ == "__main__":
    main()
