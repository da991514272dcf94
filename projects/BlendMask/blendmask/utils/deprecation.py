"""Former names of renamed objects, kept for a while with a DeprecationWarning."""

import warnings
from typing import Callable, Dict


def deprecated_names(module_name: str, renamed: Dict[str, Callable[[], object]]):
    """A module ``__getattr__`` serving each former name of ``renamed`` (former name -> function
    returning the object under its new name), with a DeprecationWarning naming the new one."""

    def __getattr__(name):
        if name in renamed:
            value = renamed[name]()
            warnings.warn(f"{module_name}.{name} is now {value.__name__} (old name deprecated)",
                          DeprecationWarning, stacklevel=2)
            return value
        raise AttributeError(f"module {module_name!r} has no attribute {name!r}")

    return __getattr__
