"""Argument predicates shared by every layer of the package (it imports nothing of singax)."""
from __future__ import annotations

from typing import Any

import numpy as np


def is_int(value: Any) -> bool:
    """True for a Python or numpy integer; bools (an int subclass) and floats are not."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))
