"""Measurements, never assertions: ``bench`` (ours vs the C program, ``invoke bench``), ``bench_grad`` (the
cost of gradients, ``invoke bench-grad``), ``profile`` (a warm 4096² render, ``invoke profile``)."""
