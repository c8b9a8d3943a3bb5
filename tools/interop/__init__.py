"""DIALS on simulated datasets (issue 22): ``run`` drives it (our side); ``dials_metrics`` and ``readback``
run under DIALS's own Python."""
