"""noisify's detector response: ``detector`` (the steps, in C's order and with C's random streams) and
``kernels`` (their per-pixel loops, compiled with numba)."""
