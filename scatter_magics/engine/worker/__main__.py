"""``python -m scatter_magics.engine.worker``: one worker process (see ``process.py``).

Runs the imported ``process`` module, not a ``__main__`` copy of it, so that tasks reading
``scatter_magics.engine.worker.process.CURRENT`` see the running worker.
"""

from .process import main

main()
