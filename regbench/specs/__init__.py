"""The component families as the config checks see them, importable without torch: each registry's declared
entries (name -> the module that registers it, the config parameters it reads). The families' modules fulfil
these declarations when they are imported (see regbench.registry.Registry.register)."""
