"""Shared memory and memory limits: large buffers written once, mapped by every reader.

| module | holds |
|---|---|
| ``pool`` | the owner's pool: which keys' buffers are in which segment, and for how long (``SharedMemoryPool``, ``ShmRef``) |
| ``records`` | what the pool keeps per key (``KeyRecord``) and per early copy (``Draft``) |
| ``reuse`` | the pool's segments: made when there is room, reused when free, given back when idle (``SegmentCache``) |
| ``runs`` | a scatter's buffers into the pool as they come, the pieces of one array held back and copied together (``RunStore``) |
| ``layout`` | where buffers go in a segment: one key's one after another, or a run of a split's pieces as they lie in memory |
| ``segment`` | one segment: a file in ``/dev/shm`` written by ``pwrite`` or through a warm mapping |
| ``copier`` | ``ParallelCopy``: a large copy into warm pages split over helper threads |
| ``mapper`` | read-only mappings of other processes' segments (workers, gathering clients) |
| ``space`` | how much ``/dev/shm`` can still hold; the socket fallback's warning and mode |
| ``cleanup`` | unlinking segments whose pool is gone: a dead owner's prefix, and orphans swept at start |
| ``limits`` | ``memory_limit`` enforcement: placement with room, refusals, the machine's free memory |

May import: the package's top level (``errors``, ``sizes``); nothing else of the engine.
"""
