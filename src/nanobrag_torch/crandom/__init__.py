"""C's random numbers: ``generators`` (the Numerical Recipes generators the C programs use, bit for bit) and
``streams`` (C's seeds, its draws of misset, mosaic domains and noise, in C's order)."""
