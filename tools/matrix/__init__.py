"""A corpus of cases run against our programs and the C suite: ``corpus`` (load, run hermetically, judge each
output), ``parity_matrix`` (a whole corpus, worst first: ``invoke parity-matrix``)."""
