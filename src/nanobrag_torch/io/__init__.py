"""File formats of the C program: MOSFLM matrix, HKL text, Fdump.bin, source file, SMV, PGM, raw float."""
