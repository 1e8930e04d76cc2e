"""How every family is scored: the sums kept across DDP ranks (``metrics``), the figures made
from them, one perplexity definition (``summary``), the metric keys, descriptions and tables
(``schema``), and the test-time methods, the neural cache and dynamic evaluation
(``test_time``)."""
