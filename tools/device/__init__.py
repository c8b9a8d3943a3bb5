"""The GPU check (``python -m tools.device.check``): CUDA against the CPU on the kernel's paths, and timings."""
