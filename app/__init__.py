"""The top room: entry points (the ``leadflow`` CLI) and one composition root per service.

BLAS threads: every entry point imports this package before numpy, so a process
pins BLAS to one thread unless the operator set the variables
(:func:`services.limits.one_blas_thread` says why).
"""

from services.limits import one_blas_thread

one_blas_thread()
