import jax
import pytest


@pytest.fixture
def x64():
    """Run a test in float64 (gradient checks)."""
    jax.config.update("jax_enable_x64", True)
    yield
    jax.config.update("jax_enable_x64", False)


@pytest.fixture(autouse=True)
def _reset_training():
    from singax import autograd
    saved = autograd.training
    yield
    autograd.training = saved
