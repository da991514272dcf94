"""The package's commands: ``blendmask-train`` (:mod:`.train`), ``blendmask-demo`` (:mod:`.demo`) and
``blendmask-export`` (:mod:`.export`). The repository's ``train_net.py``, ``demo/demo.py`` and
``tools/export_model.py`` are thin wrappers around them, with the same command lines."""
