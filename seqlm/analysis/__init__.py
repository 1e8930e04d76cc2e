"""The tutorial's lesson, measured: gradients through time (``gradflow``) and BPTT written
out in NumPy (``bptt``, a teaching reference checked against autograd)."""
