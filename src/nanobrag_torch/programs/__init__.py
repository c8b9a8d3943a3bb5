"""The programs of the C suite, each parse -> load -> render -> write: nanobragg (the simulator's command line,
and the dispatcher of the others), nonbragg, noisify, add, and dataset (-frames/-stills runs)."""
