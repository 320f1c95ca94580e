"""Shared memory and memory limits: large buffers written once, mapped by every reader.

| module | holds |
|---|---|
| ``pool`` | the owner's pool of segments: their lifetime, reuse and trimming (``SharedMemoryPool``, ``ShmRef``) |
| ``segment`` | one segment: a file in ``/dev/shm`` written by ``pwrite`` or through a warm mapping |
| ``mapper`` | read-only mappings of other processes' segments (workers, gathering clients) |
| ``space`` | how much ``/dev/shm`` can still hold; the socket fallback's warning and mode |
| ``cleanup`` | unlinking segments whose pool is gone: a dead owner's prefix, and orphans swept at start |
| ``limits`` | ``memory_limit`` enforcement: placement with room, refusals, the machine's free memory |

May import: the package's top level (``errors``, ``sizes``); nothing else of the engine.
"""
