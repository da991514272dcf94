"""Wall time per named stage of a model's forward, from forward hooks on modules and wrappers
around functions or methods; imports nothing of this package, so a process running another
project's model can use it too."""

import time
from collections import defaultdict


class StageTimer:
    """Accumulates wall time per named stage from module hooks and method wrappers."""

    def __init__(self):
        self.times = defaultdict(float)
        self._starts = {}
        self._undo = []
        self._wrapped = set()

    def module(self, name, module):
        def pre(*_):
            self._starts[name] = time.perf_counter()

        def post(*_):
            self.times[name] += time.perf_counter() - self._starts.pop(name)

        self._undo += [module.register_forward_pre_hook(pre).remove, module.register_forward_hook(post).remove]

    def method(self, name, owner, attr):
        """Time ``owner.attr``; wrapping the same method twice (a class shared by models) is a no-op."""
        if (id(owner), attr) in self._wrapped:
            return
        self._wrapped.add((id(owner), attr))
        original = getattr(owner, attr)

        def timed(*args, **kwargs):
            start = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                self.times[name] += time.perf_counter() - start

        if isinstance(owner, type):  # a staticmethod called through the class
            static = vars(owner)[attr]
            setattr(owner, attr, staticmethod(timed))
            self._undo.append(lambda: setattr(owner, attr, static))
        else:
            overridden = attr in vars(owner)  # an instance attribute already replaces the method
            setattr(owner, attr, timed)
            self._undo.append(lambda: setattr(owner, attr, original) if overridden else delattr(owner, attr))

    def reset(self):
        self.times.clear()

    def remove(self):
        for undo in self._undo:
            undo()
