"""Tools that are not on the live path: the simulator, the demo, ``vigil detect`` and the embedded broker launcher."""
