"""The tutorial's lesson, measured: gradients through time (``gradflow``), BPTT written out in
NumPy (``bptt``, a teaching reference checked against autograd), and the figures' backend
(``plotting``)."""
