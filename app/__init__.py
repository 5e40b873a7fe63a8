"""The top room: entry points (the ``leadflow`` CLI) and one composition root per service.

BLAS threads: the policy's learner multiplies small matrices (a few dozen
weights) once per outcome; OpenBLAS's default of one thread per core only makes
the threads wait for each other, and on a busy host a learner step took about
40 times longer (831 ms against 20 ms in a micro-benchmark). Every entry point
imports this package before numpy, so a process pins BLAS to one thread unless
the operator set the variables.
"""

import os

for _name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_name, "1")
